"""The importance-weighted bound (IWAE) and importance-sampled log p(x).

```none
log w_k   = log p(x | z_k) + log p(z_k) - log q(z_k | x),   z_k ~ q(z | x)
IWAE_K(x) = log (1/K) sum_k w_k        (logsumexp, no overflow)
ELBO = IWAE_1 <= IWAE_K <= IWAE_{K+1} <= log p(x);  IWAE_K -> log p(x), K -> inf
```

With large K the same quantity is the importance-sampled estimate of
log p(x) used for evaluation (`VAEModel.log_likelihood`); `logmeanexp_chunks`
combines chunks of samples so that K = 5000 need not fit in memory at once.

References: Burda, Grosse & Salakhutdinov, "Importance Weighted
Autoencoders", 2015; Rezende et al. 2014 (importance-sampled log p(x)).
"""

import math

import tensorflow as tf


def log_weights(log_px_z, log_pz, log_qz, kl_weight=1.0):
    """log w = log p(x|z) + β (log p(z) - log q(z|x)); all shape (K, B).

    `kl_weight` (β) is 1 for the bound itself; other values give the
    annealed weights used during KL warm-up with the IWAE objective.
    """
    return log_px_z + kl_weight * (log_pz - log_qz)


def iwae(log_w):
    """IWAE_K per example from log weights of shape (K, B): shape (B,)."""
    k = tf.cast(tf.shape(log_w)[0], log_w.dtype)
    return tf.reduce_logsumexp(log_w, axis=0) - tf.math.log(k)


def logmeanexp_chunks(chunks):
    """log mean exp over the concatenation of chunks of shape (K_i, B).

    Each chunk is given as `(logsumexp over its K_i samples, K_i)`; returns
    log (1/sum K_i) sum_i exp(logsumexp_i), shape (B,).
    """
    lse = tf.reduce_logsumexp(tf.stack([c for c, _ in chunks]), axis=0)
    total = sum(k for _, k in chunks)
    return lse - math.log(total)
