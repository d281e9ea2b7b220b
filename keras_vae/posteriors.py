"""Gaussian posteriors from the `(loc, scale)` tensors that layers pass on.

Layers exchange tensors, never distributions (Keras 3 needs tensors between
layers); this module is the one place that turns `(loc, scale)` back into a
TFP distribution, so the head, the KL, the sampler and the objectives agree
on what a scale of a given rank means:

```none
(loc, scale), scale.shape == loc.shape         ->  q = prod_d N(z_d; loc_d, scale_d^2)
                                                    (loc (B, L), or (B, *event) for a
                                                    spatial latent: the product over
                                                    every axis after the batch axis)
(loc, scale), scale.shape == loc.shape + (L,)  ->  q = N(z; loc, scale scale^T), scale lower-triangular
(logits,) of shape (B, N, C)                   ->  q = prod_n OneHotCategorical(z_n; logits_n)
```
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def is_full_covariance(loc, scale):
    """Whether `scale` is a (B, L, L) Cholesky factor rather than (B, L)."""
    return len(scale.shape) == len(loc.shape) + 1


def check_loc_scale(loc, scale, who):
    """Raises a clear error unless `(loc, scale)` is a valid pair of shapes."""
    loc_shape = tuple(loc.shape)
    scale_shape = tuple(scale.shape)

    def same(a, b):  # unknown (None) dimensions match anything
        return len(a) == len(b) and all(
            i is None or j is None or i == j for i, j in zip(a, b)
        )

    ok = same(scale_shape, loc_shape) or (
        len(scale_shape) == len(loc_shape) + 1
        and same(scale_shape[:-1], loc_shape)
        and same(scale_shape[-1:], loc_shape[-1:])
    )
    if len(loc_shape) < 2 or (len(loc_shape) > 2 and len(scale_shape) != len(loc_shape)):
        ok = False
    if not ok:
        raise ValueError(
            f"{who} expects `(loc, scale)` with loc of shape (batch, L) and "
            "scale of shape (batch, L) (diagonal) or (batch, L, L) "
            "(lower-triangular), or loc and scale of one shape (batch, "
            "*event) (a diagonal latent of any shape). Received: "
            f"loc.shape={loc_shape}, scale.shape={scale_shape}"
        )


def check_input_shape(input_shape, who):
    """`build`-time check of a layer taking `(loc, scale)`; returns L."""
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
        raise ValueError(
            f"{who} expects `(loc, scale)`. Received: input_shape={input_shape}"
        )
    loc_shape, scale_shape = input_shape
    check_loc_scale(
        keras.KerasTensor(loc_shape), keras.KerasTensor(scale_shape), who
    )
    return loc_shape[-1]


def gaussian_posterior(loc, scale):
    """The TFP distribution for `(loc, scale)`: batch (B,), event the rest.

    Event `(L,)` for a flat latent; `(*event)` (every axis after the batch
    axis) for a latent of any shape, as `Independent(Normal)`.
    """
    loc = tf.cast(loc, tf.float32)
    scale = tf.cast(scale, tf.float32)
    if is_full_covariance(loc, scale):
        return tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale)
    # Independent(Normal), flat or not: the same numbers as a
    # MultivariateNormalDiag, whose log_prob and KL trace 5-7 times slower
    # (bijector and linear-operator machinery). The KL against a
    # MultivariateNormal prior stays analytic (`objectives.analytic_kl`).
    return tfd.Independent(
        tfd.Normal(loc, scale), reinterpreted_batch_ndims=len(loc.shape) - 1
    )


def categorical_posterior(logits):
    """N independent one-hot categoricals: batch (B,), event (N, C)."""
    logits = tf.cast(logits, tf.float32)
    return tfd.Independent(
        tfd.OneHotCategorical(logits=logits, dtype=tf.float32),
        reinterpreted_batch_ndims=1,
    )


def posterior_distribution(params):
    """q(z | x) for a list of posterior parameters (see the module doc)."""
    params = list(params)
    if len(params) == 2:
        return gaussian_posterior(*params)
    if len(params) == 1:
        return categorical_posterior(params[0])
    raise ValueError(
        "Posterior parameters are `(loc, scale)` (Gaussian) or `(logits,)` "
        f"(categorical). Received {len(params)} tensors."
    )


def reparameterize(loc, scale, eps):
    """z = loc + scale * eps (or loc + scale @ eps), in float32.

    `eps` may carry extra leading sample axes: shape (..., B, *event).
    """
    loc = tf.cast(loc, tf.float32)
    scale = tf.cast(scale, tf.float32)
    if is_full_covariance(loc, scale):
        return loc + tf.linalg.matvec(scale, eps)
    return loc + scale * eps
