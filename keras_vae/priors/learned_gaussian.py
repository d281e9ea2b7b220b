"""A diagonal Gaussian prior with trainable mean and scale."""

import math

import keras

from keras_vae import _validation as v
from keras_vae.priors.base import Prior, standard_normal_distribution


@keras.saving.register_keras_serializable(package="keras_vae")
class LearnedGaussian(Prior):
    """p(z) = N(z; m, diag(s^2)) with trainable m and s.

    ```none
    s_d = softplus(r_d) + min_scale,   m, r trainable, initialised to N(0, I)
    ```

    The KL to a diagonal Gaussian posterior stays analytic. For a latent
    of shape `(h, w, C)` the parameters have that shape, with every axis
    unknown when the prior is built (a spatial size known only at run
    time) kept as 1 and broadcast: a per-channel prior.

    Args:
        min_scale: float >= 0, floor of the prior's standard deviations.

    Example:

    ```python
    q = keras_vae.KLRegularizer(prior=keras_vae.priors.LearnedGaussian())(q)
    ```
    """

    def __init__(self, min_scale=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.min_scale = v.check_float("min_scale", min_scale, minimum=0.0)

    def build(self, input_shape):
        # Initial scale exactly 1: raw = softplus^-1(1 - min_scale).
        shape = tuple(1 if d is None else int(d) for d in input_shape[1:])
        self.loc = self.add_weight(
            shape=shape, initializer="zeros", name="loc",
            dtype="float32",
        )
        self.raw_scale = self.add_weight(
            shape=shape,
            initializer=keras.initializers.Constant(
                _softplus_inverse(max(1.0 - self.min_scale, 1e-3))
            ),
            name="raw_scale", dtype="float32",
        )

    def distribution(self, event_shape):
        scale = keras.ops.softplus(self.raw_scale) + self.min_scale
        return standard_normal_distribution(event_shape, self.loc, scale)

    def get_config(self):
        config = super().get_config()
        config["min_scale"] = self.min_scale
        return config


def _softplus_inverse(y):
    return math.log(math.expm1(y))
