"""Objectives: how a VAE is scored, apart from the layers that describe it.

Objective objects (`ELBO`, `IWAE`, or a user's subclass of `Objective`)
map a forward trace to the loss and the metrics; the functions below are
the pure tensor maths they and the evaluation share.
"""

from keras_vae.objectives.base import Objective, get
from keras_vae.objectives.baselines import ScoreFunctionBaseline
from keras_vae.objectives.beta_tcvae import BetaTCVAE, tc_decomposition
from keras_vae.objectives.elbo import ELBO, elbo
from keras_vae.objectives.factor_vae import FactorVAE, FactorVAEDiscriminator
from keras_vae.objectives.iwae import IWAE, iwae
from keras_vae.objectives.kl import (
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

OBJECTIVES = ("elbo", "iwae")  # the string aliases `compile` takes

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
    "elbo",
    "get",
    "has_analytic_kl",
    "iwae",
    "kl_divergence",
    "kl_per_dimension",
    "tc_decomposition",
]
