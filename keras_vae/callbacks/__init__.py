"""Callbacks for VAE training: KL warm-up and capacity annealing."""

from keras_vae.callbacks.kl_schedule import CapacityAnnealing, KLWarmUp

__all__ = ["CapacityAnnealing", "KLWarmUp"]
