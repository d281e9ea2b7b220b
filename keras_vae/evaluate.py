"""Diagnostics of a trained VAEModel: where the nats go.

```none
KL_d           = E_x KL(q(z_d | x) || p(z_d))          per latent dimension
active unit d  : Cov_x( E_q[z_d | x] ) > threshold     (Burda et al. 2015: 0.01)
ELBO gap       = log p(x) - ELBO(x) = KL(q(z|x) || p(z|x))   (importance-sampled log p(x))
amortization gap      = ELBO(x; q*_x) - ELBO(x; q_φ(z|x))      q*_x: q refined per example
approximation gap     = log p(x) - ELBO(x; q*_x)               (Cremer et al. 2018)
```

Each function takes a compiled `VAEModel` and data as for
`VAEModel.log_likelihood` (arrays; a list for several inputs; `y` when the
target is not the input).
"""

import numpy as np
import tensorflow as tf

from keras_vae.kl import kl_per_dimension as _kl_per_dimension
from keras_vae.posteriors import posterior_distribution


def kl_per_dimension(model, x, batch_size=256):
    """Mean KL(q(z_d|x) ‖ p(z_d)) over `x` for each latent dimension, (L,)
    (the latent's shape, `(h, w, C)`, for a spatial latent).

    Needs one latent with a diagonal (or categorical: per variable)
    posterior and a factorised prior (the standard normal prior is), and no
    flow; raises otherwise.
    """
    if model.sampler.sampled_kl:
        raise ValueError(
            f"kl_per_dimension: '{model.sampler.name}' is a flow posterior, "
            "whose KL does not split by dimension."
        )
    params = model.encode(x, batch_size=batch_size)
    params = list(params) if isinstance(params, tuple) else [params]
    kl_layer = model.kl_layer
    per_dim = _kl_per_dimension(
        posterior_distribution(params),
        kl_layer.prior_distribution(
            event_shape=kl_layer.event_shape_of(params)),
    )
    if per_dim is None:
        raise ValueError(
            "kl_per_dimension needs a diagonal posterior and a factorised "
            "prior; this model's KL does not split by dimension."
        )
    return np.asarray(tf.reduce_mean(per_dim, axis=0))


def active_units(model, x, threshold=0.01, batch_size=256, level=None):
    """Number of latent dimensions whose posterior mean varies with x.

    A unit d is active when Cov_x(E_q[z_d | x]) > `threshold` (Burda et al.
    2015), with E_q[z | x] taken as the point `reconstruct` decodes
    (`VAEModel.posterior_mode`: the mean, or the flow of the mean for
    `IAFSample`). Returns `(count, variances)` with the per-dimension
    variances.

    Args:
        level: with several latents, the level to measure (its sampling
            layer's name or its index in `model.levels`); with one, None.
    """
    names = [lv.name for lv in model.levels]
    if level is None:
        if len(names) != 1:
            raise ValueError(
                f"active_units: the model has {len(names)} latent levels "
                f"{names}; pass `level=` (a name or an index)."
            )
        level = 0
    if isinstance(level, str):
        if level not in names:
            raise ValueError(
                f"Invalid value received for argument `level`: expected one "
                f"of {names}. Received: level={level!r}"
            )
        level = names.index(level)
    if model.levels[level].sampler.num_params != 2:
        raise ValueError(
            "active_units needs a Gaussian latent (posterior `(loc, scale)`); "
            f"'{names[level]}' is categorical."
        )
    modes = model.posterior_mode(x, batch_size=batch_size)
    z = modes if len(names) == 1 else modes[level]
    variances = np.var(np.asarray(z, np.float64), axis=0)
    return int(np.sum(variances > threshold)), variances


def reconstruction_error(model, x, y=None, batch_size=256):
    """Mean squared error between targets and `reconstruct(x)`, per example."""
    target = model.default_target(x) if y is None else y
    recon = model.reconstruct(x, batch_size=batch_size)
    diff = np.asarray(target, np.float64) - np.asarray(recon, np.float64)
    return np.mean(diff.reshape(len(diff), -1) ** 2, axis=1)


def elbo_gap(model, x, num_samples=1000, elbo_samples=100, batch_size=None,
             y=None):
    """Per-example log p(x) - ELBO(x), both estimated, in nats.

    log p(x) is the importance-sampled estimate with `num_samples`
    samples; the ELBO uses `elbo_samples`. The gap equals
    KL(q(z|x) ‖ p(z|x)), how far the encoder is from the true posterior.
    """
    log_px = model.log_likelihood(x, num_samples, batch_size=batch_size, y=y)
    elbo = model.elbo(x, elbo_samples, batch_size=batch_size, y=y)
    return log_px - elbo


def amortization_gap(model, x, refine_steps=200, num_samples=1000,
                     elbo_samples=100, batch_size=None, y=None, seed=0,
                     refine_learning_rate=0.1, refine_samples=4):
    """log p(x) - ELBO split into the approximation and amortization gaps.

    ```none
    log p(x) - ELBO(q_φ) = [log p(x) - ELBO(q*)]  +  [ELBO(q*) - ELBO(q_φ)]
                            approximation gap        amortization gap
    ```

    q_φ is the encoder's posterior; q* the same family refined per example
    by `refine_steps` Adam steps on that example's ELBO
    (`VAEModel.elbo(..., refine_steps=N)`, the model's weights untouched),
    standing in for the best member of the family. log p(x) is
    importance-sampled with `num_samples` samples and the refined q* as
    proposal (a tighter estimate than with q_φ at the same K). Cremer, Li
    & Duvenaud, "Inference Suboptimality in Variational Autoencoders",
    2018.

    Args:
        model: a compiled `VAEModel` with Gaussian `ReparameterizedSample`
            latents whose posterior reads only the model inputs.
        x, y, batch_size: as for `VAEModel.log_likelihood`.
        refine_steps, refine_learning_rate, refine_samples: the per-example
            refinement.
        num_samples: K of the log p(x) estimate.
        elbo_samples: samples of each ELBO estimate.
        seed: int; the same draws for both ELBOs.

    Returns:
        dict of per-example means (floats, nats): `log_likelihood`,
        `elbo` (amortized), `refined_elbo`, `approximation_gap`,
        `amortization_gap`, `total_gap` (= log p(x) - ELBO).
    """
    refine = dict(refine_steps=refine_steps,
                  refine_learning_rate=refine_learning_rate,
                  refine_samples=refine_samples)
    elbo = model.elbo(x, elbo_samples, batch_size=batch_size, y=y, seed=seed)
    refined = model.elbo(x, elbo_samples, batch_size=batch_size, y=y,
                         seed=seed, **refine)
    log_px = model.log_likelihood(x, num_samples, batch_size=batch_size,
                                  y=y, seed=seed, **refine)
    means = {"log_likelihood": log_px.mean(), "elbo": elbo.mean(),
             "refined_elbo": refined.mean()}
    means["approximation_gap"] = means["log_likelihood"] - means["refined_elbo"]
    means["amortization_gap"] = means["refined_elbo"] - means["elbo"]
    means["total_gap"] = means["log_likelihood"] - means["elbo"]
    return {k: float(v) for k, v in means.items()}


# Image metrics (FID, PSNR, SSIM) live in keras_vae/evaluate_images.py.
from keras_vae.evaluate_images import (  # noqa: E402
    frechet_distance,
    frechet_distance_from_moments,
    reconstruction_quality,
)
