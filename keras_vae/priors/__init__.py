"""Latent priors p(z), usable as `KLRegularizer(prior=...)`."""

import keras

from keras_vae.priors.base import Prior
from keras_vae.priors.learned_gaussian import LearnedGaussian
from keras_vae.priors.mixture_of_gaussians import MixtureOfGaussians
from keras_vae.priors.standard_normal import StandardNormal
from keras_vae.priors.uniform_categorical import UniformCategorical
from keras_vae.priors.vamp_prior import VampPrior

__all__ = [
    "LearnedGaussian",
    "MixtureOfGaussians",
    "Prior",
    "StandardNormal",
    "UniformCategorical",
    "VampPrior",
    "get",
]

_BY_NAME = {
    "standard_normal": StandardNormal,
    "uniform_categorical": UniformCategorical,
}


def get(identifier):
    """A `Prior` from a name (`"standard_normal"`), a config, or an instance."""
    if identifier is None:
        return StandardNormal()
    if isinstance(identifier, Prior):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict):
        prior = keras.saving.deserialize_keras_object(identifier)
        if isinstance(prior, Prior):
            return prior
    raise ValueError(
        "Invalid value received for argument `prior`. Expected a "
        f"keras_vae.priors.Prior or one of {sorted(_BY_NAME)}. "
        f"Received: prior={identifier!r}"
    )
