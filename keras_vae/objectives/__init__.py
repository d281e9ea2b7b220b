"""Objectives: how a VAE is scored, apart from the layers that describe it.

Objective objects (`ELBO`, `IWAE`, or a user's subclass of `Objective`)
map a forward trace to the loss and the metrics; the functions below are
the pure tensor maths they and the evaluation share. The string registry
(`get`, `OBJECTIVES`) lives here, as Keras keeps `losses.get` in
`losses/__init__`, so that the base class never imports its subclasses.
"""

import keras

from keras_vae import _validation as v

from keras_vae.objectives.base import Objective
from keras_vae.objectives.baselines import ScoreFunctionBaseline
from keras_vae.objectives.beta_tcvae import BetaTCVAE, tc_decomposition
from keras_vae.objectives.elbo import ELBO, elbo
from keras_vae.objectives.factor_vae import FactorVAE, FactorVAEDiscriminator
from keras_vae.objectives.iwae import IWAE, iwae
from keras_vae.kl import (
    has_analytic_kl,
    kl_divergence,
    kl_per_dimension,
)
from keras_vae.objectives.logmeanexp import (
    chunked_argmax,
    chunked_logmeanexp,
    chunked_mean,
    chunked_weighted_mean,
)
from keras_vae.objectives.logmeanexp import (
    chunked_logmeanexp_and_ess,
    chunked_weighted_mean_and_ess,
    effective_sample_size,
)

# The string aliases `compile` takes.
_BY_NAME = {"elbo": ELBO, "iwae": IWAE}
OBJECTIVES = tuple(_BY_NAME)


def get(identifier, num_samples=None):
    """An `Objective` from a name (`"elbo"`, `"iwae"`), a config or an object.

    `num_samples` (K) goes to an objective named by a string; with an
    object it must be None or agree with the object's.
    """
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        v.check_choice("objective", identifier, OBJECTIVES)
        if num_samples is None:  # the objective's own default K
            return _BY_NAME[identifier]()
        return _BY_NAME[identifier](num_samples=num_samples)
    if not isinstance(identifier, Objective):
        raise v.invalid(
            "objective",
            "'elbo', 'iwae' or a keras_vae.objectives.Objective",
            identifier,
        )
    if num_samples is not None and num_samples != identifier.num_samples:
        raise ValueError(
            f"The objective {identifier!r} takes {identifier.num_samples} "
            f"samples; compile also received num_samples={num_samples}. "
            "Give K once, to the objective."
        )
    return identifier

__all__ = [
    "BetaTCVAE",
    "ELBO",
    "FactorVAE",
    "FactorVAEDiscriminator",
    "IWAE",
    "OBJECTIVES",
    "Objective",
    "ScoreFunctionBaseline",
    "chunked_argmax",
    "chunked_logmeanexp",
    "chunked_mean",
    "chunked_weighted_mean",
    "chunked_logmeanexp_and_ess",
    "chunked_weighted_mean_and_ess",
    "effective_sample_size",
    "elbo",
    "get",
    "has_analytic_kl",
    "iwae",
    "kl_divergence",
    "kl_per_dimension",
    "tc_decomposition",
]

from keras_vae.objectives.autoencoder_kl import AutoencoderKL  # noqa: E402

__all__ += ["AutoencoderKL"]
