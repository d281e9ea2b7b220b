"""Callbacks for VAE training: KL warm-up, capacity and temperature
annealing, TensorBoard pictures, step-level backup and restore."""

from keras_vae.callbacks.backup_and_restore import StepBackupAndRestore
from keras_vae.callbacks.kl_schedule import CapacityAnnealing, KLWarmUp
from keras_vae.callbacks.temperature import TemperatureAnnealing
from keras_vae.callbacks.tensorboard_images import TensorBoardImages

__all__ = [
    "CapacityAnnealing",
    "KLWarmUp",
    "StepBackupAndRestore",
    "TemperatureAnnealing",
    "TensorBoardImages",
]
