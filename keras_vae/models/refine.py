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
u_{t+1} = Adam(u_t, ∇_u ELBO_S(x; u_t))           S reparameterised samples, seed per step; decoder fixed
```

Adam is written out on tensors: the parameters are per-example tensors
inside one XLA-compiled `tf.while_loop`, where a Keras optimizer (which
updates variables) does not fit.

Supported: Gaussian latents drawn by `ReparameterizedSample` (diagonal or
full-covariance scale) whose posterior reads only the model inputs (flat,
spatial, several such levels). Flows (`IAFSample`), categorical latents
and levels whose posterior reads another level's z are refused.
"""

import tensorflow as tf

from keras_vae.random import derive_seed

_BETA_1, _BETA_2, _EPSILON = 0.9, 0.999, 1e-8


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


def refined_posteriors(model, x, y, steps, learning_rate, num_samples, seed):
    """dict level index -> refined `(loc, scale)` after `steps` Adam steps
    on each example's `num_samples`-sample ELBO (weights untouched)."""
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
        lr = learning_rate * tf.sqrt(1 - _BETA_2 ** tf1) / (1 - _BETA_1 ** tf1)
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
