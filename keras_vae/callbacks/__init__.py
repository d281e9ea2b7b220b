"""Callbacks for VAE training: KL warm-up, capacity and temperature annealing."""

from keras_vae.callbacks.kl_schedule import CapacityAnnealing, KLWarmUp
from keras_vae.callbacks.temperature import TemperatureAnnealing

__all__ = ["CapacityAnnealing", "KLWarmUp", "TemperatureAnnealing"]
