"""The three layers that turn a Keras model into a VAE."""

from keras_vae.layers.gaussian_encoder_head import GaussianEncoderHead
from keras_vae.layers.kl_regularizer import KLRegularizer
from keras_vae.layers.reparameterized_sample import ReparameterizedSample

__all__ = ["GaussianEncoderHead", "KLRegularizer", "ReparameterizedSample"]
