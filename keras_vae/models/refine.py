"""Per-example refinement of the posterior: semi-amortised inference.

The encoder amortises inference: one network gives every example's q(z|x).
Its guess can be improved per example at test time (Kim et al. 2018): the
posterior parameters start at the encoder's output and take N Adam steps
on that example's ELBO, with the decoder fixed. The ELBO of the refined q
is closer to log p(x); the difference to the encoder's ELBO is the
amortisation gap, what is left to log p(x) the approximation gap (Cremer et
al. 2018; `keras_vae.evaluate.amortization_gap`).

```none
u_0 = unconstrained(encoder(x))                  loc, log scale (or the Cholesky factor with log diagonal)
u_{t+1} = Adam_{η_t}(u_t, ∇_u ELBO_S(x; u_t))     S reparameterised samples, seed per step; decoder fixed
η_t = η (f + (1 - f) (1 + cos(π t / (N - 1))) / 2)  cosine decay from η (t = 0) to f·η (t = N - 1)
```

The step size decays: with a constant step the stochastic gradient (S
samples) keeps the parameters jittering around the optimum, at a distance
that grows with η and with the posterior's precision, so the bound stays
short of its optimum. On PPCA with a full-covariance head (D = 10, L = 3,
σ = 0.5, posterior precision from ~1 to ~110 per dimension; the refined
ELBO's optimum is log p(x)), 1,000 steps of a constant η = 0.05 ended
0.03-0.25 nat below log p(x); decayed to f = 1 % of η they end within
0.01 from a start a trained encoder leaves (0.1-15 nats below) and within
0.04 from an untrained encoder's (3-320 nats below; η = 0.1: 0.01, and
300 steps within 0.06) (`tests/models/test_refine_default.py`).

Adam is written out on tensors: the parameters are per-example tensors
inside one XLA-compiled `tf.while_loop`, where a Keras optimizer (which
updates variables) does not fit.

Supported: Gaussian latents drawn by `ReparameterizedSample` (diagonal or
full-covariance scale) whose posterior reads only the model inputs (flat,
spatial, several such levels). Flows (`IAFSample`), categorical latents
and levels whose posterior reads another level's z are refused.
"""

import math

import tensorflow as tf

from keras_vae.random import derive_seed

_BETA_1, _BETA_2, _EPSILON = 0.9, 0.999, 1e-8
# f: the step size at the last step, as a fraction of the first.
FINAL_LEARNING_RATE_FRACTION = 0.01


def check_refinable(model):
    """Raises unless every level can be refined (see the module doc)."""
    bad = []
    for level in model.levels:
        sampler = level.sampler
        if (not sampler.reparameterized or sampler.sampled_kl
                or sampler.num_params != 2 or level.z_deps):
            bad.append(f"'{level.name}' ({type(sampler).__name__}"
                       + (", reads another level's z" if level.z_deps else "")
                       + ")")
    if bad:
        raise ValueError(
            "refine_steps > 0 refines Gaussian posteriors drawn by "
            "ReparameterizedSample (diagonal or full-covariance scale) "
            "whose parameters read only the model inputs; the latents "
            f"{bad} are not such. Use refine_steps=0."
        )


def _to_unconstrained(loc, scale):
    if len(scale.shape) == len(loc.shape) + 1:  # Cholesky factor
        diag = tf.linalg.diag_part(scale)
        return loc, tf.linalg.set_diag(scale, tf.math.log(diag))
    return loc, tf.math.log(scale)


def _from_unconstrained(loc, raw, full):
    if full:
        lower = tf.linalg.band_part(raw, -1, 0)
        return loc, tf.linalg.set_diag(
            lower, tf.exp(tf.linalg.diag_part(raw))
        )
    return loc, tf.exp(raw)


def learning_rate_at(step, steps, learning_rate,
                     final_fraction=FINAL_LEARNING_RATE_FRACTION):
    """η_t of the cosine decay from `learning_rate` (t = 0) to
    `final_fraction · learning_rate` (t = steps - 1); `step` a scalar
    tensor or number, `steps` a Python int."""
    f = float(final_fraction)
    t = tf.cast(step, tf.float32)
    progress = t / float(max(1, int(steps) - 1))
    return learning_rate * (
        f + (1.0 - f) * 0.5 * (1.0 + tf.cos(math.pi * progress)))


def refined_posteriors(model, x, y, steps, learning_rate, num_samples, seed,
                       final_fraction=FINAL_LEARNING_RATE_FRACTION):
    """dict level index -> refined `(loc, scale)` after `steps` Adam steps
    on each example's `num_samples`-sample ELBO (weights untouched).

    Args:
        model: a `VAEModel` (`check_refinable`).
        x, y: model inputs and targets of a chunk of examples.
        steps: N, a Python int.
        learning_rate: η, Adam's step size at the first step.
        num_samples: S, reparameterised samples of z per step.
        seed: the refinement's seed (step t draws with
            `derive_seed(seed, t)`).
        final_fraction: f, the last step's size as a fraction of η
            (cosine decay; 1 keeps η constant). Default 0.01.
    """
    start = model.trace(x, mode="mode", decode=False)
    fulls, init = [], []
    for level in start.levels:
        loc, scale = (tf.cast(p, tf.float32) for p in level.params)
        fulls.append(len(scale.shape) == len(loc.shape) + 1)
        init.extend(_to_unconstrained(loc, scale))

    def params_of(flat):
        return {i: _from_unconstrained(flat[2 * i], flat[2 * i + 1], full)
                for i, full in enumerate(fulls)}

    def step(t, us, ms, vs):
        with tf.GradientTape() as tape:
            tape.watch(us)
            trace = model.trace(
                x, y, num_samples=num_samples,
                seed=derive_seed(seed, t), posterior_params=params_of(us),
            )
            # Examples are independent: the gradient of the sum is each
            # example's own gradient.
            objective = -tf.reduce_sum(trace.elbo)
        grads = tape.gradient(objective, us)
        tf1 = tf.cast(t + 1, tf.float32)
        lr = learning_rate_at(t, steps, learning_rate, final_fraction)
        lr = lr * tf.sqrt(1 - _BETA_2 ** tf1) / (1 - _BETA_1 ** tf1)
        ms = [_BETA_1 * m + (1 - _BETA_1) * g for m, g in zip(ms, grads)]
        vs = [_BETA_2 * v + (1 - _BETA_2) * g * g for v, g in zip(vs, grads)]
        us = [u - lr * m / (tf.sqrt(v) + _EPSILON)
              for u, m, v in zip(us, ms, vs)]
        return t + 1, us, ms, vs

    zeros = [tf.zeros_like(u) for u in init]
    _, final, _, _ = tf.while_loop(
        lambda t, *_: t < steps, step,
        (tf.constant(0, tf.int32), init, zeros, list(zeros)),
    )
    return params_of(final)
