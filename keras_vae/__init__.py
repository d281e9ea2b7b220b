"""keras_vae: Keras 3 layers for variational autoencoders on TFP."""

from keras_vae import losses

__version__ = "0.1.0"

__all__ = ["losses"]
