"""Objectives: pure functions on tensors, apart from the layers.

The layers describe the model; these functions decide how it is scored
(as Pyro keeps its ELBOs apart from models).
"""

from keras_vae.objectives.elbo import elbo
from keras_vae.objectives.iwae import iwae, log_weights, logmeanexp_chunks
from keras_vae.objectives.kl import (
    has_analytic_kl,
    kl_divergence,
    kl_per_dimension,
)

OBJECTIVES = ("elbo", "iwae")

__all__ = [
    "OBJECTIVES",
    "elbo",
    "has_analytic_kl",
    "iwae",
    "kl_divergence",
    "kl_per_dimension",
    "log_weights",
    "logmeanexp_chunks",
]
