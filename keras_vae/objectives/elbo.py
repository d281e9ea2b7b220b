"""The evidence lower bound with K Monte Carlo samples.

```none
ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))  <=  log p(x)
        ~ (1/K) sum_k log p(x | z_k) - KL,     z_k ~ q(z | x)
log p(x) - ELBO(x) = KL(q(z | x) || p(z | x))  >= 0
loss    = -(1/K) sum_k log p(x | z_k) + sum_levels penalty(KL)   (β, free bits, capacity)
```

References: Kingma & Welling, "Auto-Encoding Variational Bayes", 2013.
"""

import keras
import tensorflow as tf

from keras_vae.objectives.base import Objective


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


@keras.saving.register_keras_serializable(package="keras_vae")
class ELBO(Objective):
    """The (β-weighted) ELBO, the default objective of `VAEModel`.

    The loss is the batch mean of -(1/K) Σ_k log p(x | z_k) plus each
    latent level's `KLRegularizer` penalty: β · KL, with free bits or a KL
    capacity when the layer sets them. Reparameterised latents get
    pathwise gradients; a relaxed (Gumbel-softmax) latent its relaxation's.

    Args:
        num_samples: K, draws of z per example (default 1).

    Example:

    ```python
    vae.compile(loss=keras_vae.losses.BernoulliNLL(),
                objective=keras_vae.objectives.ELBO(num_samples=4))
    ```

    References: Kingma & Welling 2013; Higgins et al. 2017 (β);
    Kingma et al. 2016 (free bits).
    """

    def loss(self, trace, sample_weight=None):
        penalty = trace.penalty * self.mean_weight(sample_weight)
        return self.batch_mean(trace.reconstruction, sample_weight) + penalty
