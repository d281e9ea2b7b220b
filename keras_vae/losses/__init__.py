"""Likelihood losses: -log p(x | decoder output), built on TFP distributions.

Each is a `keras.losses.Loss` usable in any Keras model, with a
`distribution(params)` method and a `params_size(event_shape)` class method.
"""

from keras_vae.losses.base import LikelihoodLoss
from keras_vae.losses.bernoulli import BernoulliNLL
from keras_vae.losses.beta import BetaNLL
from keras_vae.losses.categorical import CategoricalNLL
from keras_vae.losses.continuous_bernoulli import ContinuousBernoulliNLL
from keras_vae.losses.discretized_logistic_mixture import (
    DiscretizedLogisticMixtureNLL,
)
from keras_vae.losses.gaussian import GaussianNLL
from keras_vae.losses.negative_binomial import NegativeBinomialNLL
from keras_vae.losses.poisson import PoissonNLL
from keras_vae.losses.laplace import LaplaceNLL
from keras_vae.losses.perceptual import PerceptualDistance
from keras_vae.losses.vgg16_lpips import vgg16_lpips_features

__all__ = [
    "LikelihoodLoss",
    "BernoulliNLL",
    "GaussianNLL",
    "ContinuousBernoulliNLL",
    "CategoricalNLL",
    "DiscretizedLogisticMixtureNLL",
    "PoissonNLL",
    "NegativeBinomialNLL",
    "BetaNLL",
    "LaplaceNLL",
    "PerceptualDistance",
    "vgg16_lpips_features",
]
