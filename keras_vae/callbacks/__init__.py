"""Callbacks for VAE training: KL warm-up, capacity and temperature
annealing, TensorBoard pictures."""

from keras_vae.callbacks.kl_schedule import CapacityAnnealing, KLWarmUp
from keras_vae.callbacks.temperature import TemperatureAnnealing
from keras_vae.callbacks.tensorboard_images import TensorBoardImages

__all__ = [
    "CapacityAnnealing",
    "KLWarmUp",
    "TemperatureAnnealing",
    "TensorBoardImages",
]
