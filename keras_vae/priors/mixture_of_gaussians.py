"""A trainable mixture of diagonal Gaussians as the prior."""

import keras
import tensorflow_probability as tfp

from keras_vae import _validation as v
from keras_vae.priors.base import Prior

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="keras_vae")
class MixtureOfGaussians(Prior):
    """p(z) = sum_k pi_k N(z; m_k, diag(s_k^2)), all trainable.

    ```none
    pi = softmax(a),  s_k = softplus(r_k) + min_scale
    ```

    TFP has no closed-form KL from a Gaussian to a mixture, so
    `KLRegularizer` uses the sampled estimate log q(z) - log p(z) at the z
    the model drew (`VAEModel` passes its own samples; with K samples per
    example the estimate averages over them).

    Args:
        num_components: positive int, K.
        min_scale: float >= 0, floor of the components' standard deviations.
        seed: int or None, for the initial component means (N(0, I)).

    Example:

    ```python
    prior = keras_vae.priors.MixtureOfGaussians(num_components=10)
    q = keras_vae.KLRegularizer(prior=prior)(q)
    ```

    References: Dilokthanakul et al. 2016; Tomczak & Welling 2017.
    """

    flat_only = True

    def __init__(self, num_components=10, min_scale=1e-3, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_components = v.check_positive_int(
            "num_components", num_components
        )
        self.min_scale = v.check_float("min_scale", min_scale, minimum=0.0)
        self.seed = v.check_seed("seed", seed)

    def build(self, input_shape):
        latent_dim = input_shape[-1]
        k = self.num_components
        self.logits = self.add_weight(
            shape=(k,), initializer="zeros", name="logits", dtype="float32"
        )
        self.locs = self.add_weight(
            shape=(k, latent_dim),
            initializer=keras.initializers.RandomNormal(seed=self.seed),
            name="locs", dtype="float32",
        )
        self.raw_scales = self.add_weight(
            shape=(k, latent_dim), initializer="zeros", name="raw_scales",
            dtype="float32",
        )

    def distribution(self, event_shape=None):
        scales = keras.ops.softplus(self.raw_scales) + self.min_scale
        return tfd.MixtureSameFamily(
            tfd.Categorical(logits=self.logits),
            tfd.Independent(tfd.Normal(self.locs, scales),
                            reinterpreted_batch_ndims=1),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_components": self.num_components,
                "min_scale": self.min_scale,
                "seed": self.seed,
            }
        )
        return config
