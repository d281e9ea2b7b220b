"""The importance-weighted bound (IWAE) and importance-sampled log p(x).

```none
log w_k   = log p(x | z_k) + log p(z_k) - log q(z_k | x),   z_k ~ q(z | x)
IWAE_K(x) = log (1/K) sum_k w_k        (logsumexp, no overflow)
ELBO = IWAE_1 <= IWAE_K <= IWAE_{K+1} <= log p(x);  IWAE_K -> log p(x), K -> inf
```

With large K the same quantity is the importance-sampled estimate of
log p(x) used for evaluation (`VAEModel.log_likelihood`), computed over
chunks of samples by `keras_vae.objectives.chunked_logmeanexp`.

References: Burda, Grosse & Salakhutdinov, "Importance Weighted
Autoencoders", 2015; Rezende et al. 2014 (importance-sampled log p(x)).
"""

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.objectives.base import Objective

GRADIENTS = ("standard",)


def iwae(log_w):
    """IWAE_K per example from log weights of shape (K, B): shape (B,)."""
    k = tf.cast(tf.shape(log_w)[0], log_w.dtype)
    return tf.reduce_logsumexp(log_w, axis=0) - tf.math.log(k)


@keras.saving.register_keras_serializable(package="keras_vae")
class IWAE(Objective):
    """The importance-weighted bound IWAE_K as the training objective.

    ```none
    loss = -mean_b log (1/K) sum_k p(x_b | z_k) [p(z_k) / q(z_k | x_b)]^β
    ```

    β is each level's `KLRegularizer` weight (1 gives the bound; KL
    warm-up anneals it). The bound needs the density q(z | x) of every
    training draw, so `compile` refuses relaxed (Gumbel-softmax) latents;
    and it weighs log p(z) - log q(z) per sample, so it refuses free bits
    and a KL capacity.

    Args:
        num_samples: K (default 5).
        gradient: `"standard"` (the pathwise gradient of the bound).

    Example:

    ```python
    vae.compile(loss=keras_vae.losses.BernoulliNLL(),
                objective=keras_vae.objectives.IWAE(num_samples=5))
    ```

    References: Burda, Grosse & Salakhutdinov 2015.
    """

    def __init__(self, num_samples=5, gradient="standard"):
        super().__init__(num_samples)
        self.gradient = v.check_choice("gradient", gradient, GRADIENTS)

    def check(self, model):
        shaped = [l.kl.name for l in model.levels
                  if l.kl.free_bits > 0 or l.kl.capacity is not None]
        if shaped:
            raise ValueError(
                "objective='iwae' weighs log p(z) - log q(z) per sample and "
                "has no place for free bits or a KL capacity, which "
                f"KLRegularizer layers {shaped} set. Use objective='elbo'. "
                f"Received: objective={self!r}"
            )
        relaxed = [l.name for l in model.levels if l.sampler.relaxed]
        if relaxed:
            raise ValueError(
                "objective='iwae' needs the density q(z | x) of every "
                "training draw; the relaxed (Gumbel-softmax) samples of "
                f"{relaxed} have none in the discrete model. Use "
                f"objective='elbo'. Received: objective={self!r}"
            )

    def loss(self, trace, sample_weight=None):
        bound = iwae(trace.log_weights(weighted=True))
        return -self.batch_mean(bound, sample_weight)

    def get_config(self):
        return {**super().get_config(), "gradient": self.gradient}
