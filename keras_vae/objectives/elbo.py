"""The evidence lower bound with K Monte Carlo samples.

```none
ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))  <=  log p(x)
        ~ (1/K) sum_k log p(x | z_k) - KL,     z_k ~ q(z | x)
log p(x) - ELBO(x) = KL(q(z | x) || p(z | x))  >= 0
```

References: Kingma & Welling, "Auto-Encoding Variational Bayes", 2013.
"""

import tensorflow as tf


def elbo(log_px_z, kl):
    """Per-example ELBO estimate.

    Args:
        log_px_z: log p(x | z_k), shape (K, B).
        kl: KL(q(z|x) || p(z)) per example, shape (B,) (analytic, or a
            sampled estimate over the same z_k).

    Returns:
        Tensor of shape (B,).
    """
    return tf.reduce_mean(log_px_z, axis=0) - kl
