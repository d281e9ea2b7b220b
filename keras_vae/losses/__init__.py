"""Likelihood losses: -log p(x | decoder output), built on TFP distributions.

Each is a `keras.losses.Loss` usable in any Keras model, with a
`distribution(params)` method and a `params_size(event_shape)` class method.
"""

from keras_vae.losses.base import LikelihoodLoss
from keras_vae.losses.bernoulli import BernoulliNLL

__all__ = [
    "LikelihoodLoss",
    "BernoulliNLL",
]
