"""Score-function (REINFORCE) gradients for latents that are not
reparameterizable (hard one-hot draws of `CategoricalSample`).

```none
∇_φ E_q[f(z)] = E_q[f(z) ∇_φ log q(z | x)]                    (z carries no gradient)
surrogate     = stop_gradient(A) · (log q(z | x) - stop_gradient(log q(z | x)))
```

The surrogate is 0 in the forward pass (the reported loss stays the bound)
and its gradient is A · ∇ log q: the objective adds it for each such
level. The advantage A is the learning signal minus a baseline that does
not depend on z, which keeps the estimator unbiased and lowers its
variance.

ELBO (one level l, K samples):

```none
f_k = log p(x | z_k) + Σ_{levels j reading z_l, directly or not} β_j (log p(z_j) - log q(z_j | ...))
      (+ β_l (log p(z_l) - log q(z_l | x)) when KL_l is not analytic)
A_k = f_k - c - b(x)                               (NVIL: keras_vae.objectives.baselines)
```

The level's own analytic KL keeps its exact gradient. With NVIL's signal
normalisation, A_k is divided by s = max(1, running sd), and so must the
level's KL-penalty gradient be (`rescaled_penalty`): dividing A alone
multiplies the level's β by s for the encoder (see
`keras_vae.objectives.baselines`).

IWAE (VIMCO, Mnih & Rezende 2016), with log weights log w_k:

```none
L̂      = log (1/K) Σ_j w_j
L̂_{-k} = L̂ with log w_k replaced by the mean of the other K-1 log weights
A_k    = L̂ - L̂_{-k}                               (leave-one-out baseline)
```
"""

import tensorflow as tf


def score_function_levels(trace):
    """Indices of the levels whose z is not reparameterizable."""
    return [
        i for i, level in enumerate(trace.levels)
        if level.sampler is not None and not level.sampler.reparameterized
    ]


def descendants(trace, index):
    """Indices of the levels whose posterior reads level `index`'s z,
    directly or through other levels."""
    found = set()
    for j, level in enumerate(trace.levels):
        if any(d == index or d in found for d in level.z_deps):
            found.add(j)
    return sorted(found)


def learning_signal(trace, index):
    """f_k for the score-function term of level `index` under the ELBO:
    shape (K, B), without gradient (see the module doc)."""
    signal = trace.log_px_z
    level = trace.levels[index]
    others = descendants(trace, index)
    if not level.analytic_kl:
        others = [index] + others
    for j in others:
        other = trace.levels[j]
        signal = signal + other.kl_weight * (other.log_p - other.log_q)
    return tf.stop_gradient(signal)


def surrogate(advantage, log_q):
    """Σ_k A_k (log q_k - stop_gradient(log q_k)) per example (B,): zero in
    value, A · ∇ log q in gradient. `advantage`, `log_q`: (K, B)."""
    advantage = tf.stop_gradient(advantage)
    return tf.reduce_sum(advantage * (log_q - tf.stop_gradient(log_q)), 0)


def rescaled_penalty(level, scale):
    """`(scale - 1) · penalty` of one level, a scalar: added zero-in-value
    (`t - stop_gradient(t)`) to a loss that already holds the level's
    `KLRegularizer` penalty, it turns that penalty's gradient into
    `scale · ∇ penalty`, so that the level's encoder gradient (score term
    divided by s, KL term) is the unbiased one times `scale` = 1/s.

    Args:
        level: a `LevelTrace` of a "sample" trace.
        scale: a scalar tensor without gradient
            (`ScoreFunctionBaseline.scale`).
    """
    penalty = level.kl_layer.penalty(level.kl, level.kl_per_dim())
    return (tf.cast(scale, penalty.dtype) - 1.0) * penalty


def vimco_advantages(log_w):
    """VIMCO's A_k = L̂ - L̂_{-k} from log weights (K, B), K >= 2; (K, B)
    without gradient."""
    log_w = tf.stop_gradient(log_w)
    k = tf.shape(log_w)[0]
    kf = tf.cast(k, log_w.dtype)
    total = tf.reduce_sum(log_w, 0, keepdims=True)
    loo_mean = (total - log_w) / (kf - 1.0)  # (K, B): mean of the others
    # Row k of the (K, K, B) matrix: log_w with entry k replaced.
    eye = tf.eye(k, dtype=tf.bool)[:, :, None]
    replaced = tf.where(eye, loo_mean[:, None, :], log_w[None, :, :])
    log_k = tf.math.log(kf)
    bound = tf.reduce_logsumexp(log_w, 0) - log_k
    loo_bound = tf.reduce_logsumexp(replaced, 1) - log_k
    return bound[None, :] - loo_bound
