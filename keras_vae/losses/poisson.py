"""Poisson likelihood for count data."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import _validation
from keras_vae.losses.base import LikelihoodLoss

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="keras_vae")
class PoissonNLL(LikelihoodLoss):
    """Negative log-likelihood of independent Poisson counts, from log-rates.

    ```none
    log p(x | r) = sum_d [ x_d * r_d - exp(r_d) - lgamma(x_d + 1) ]
    ```

    where `r = log(rate)` is the decoder's raw output (no activation), one
    per element, clipped to `max_log_rate`, and `x_d` in `{0, 1, 2, ...}`.
    `mean` is `exp(r)`.

    Args:
        max_log_rate: ceiling of the log-rate (default 30, a rate of 1e13):
            above about 88 `exp` overflows float32 and the loss and its
            gradient would be inf. The gradient is 0 above the ceiling.
        validate: check that `y_true` holds non-negative integers (see
            `LikelihoodLoss`).
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:

    ```python
    # Gene-expression counts for 2000 genes.
    log_rate = keras.layers.Dense(PoissonNLL.params_size((2000,)))(h)
    model.compile(loss=keras_vae.losses.PoissonNLL())
    ```
    """

    PARAMS_PER_ELEMENT = 1

    def __init__(self, max_log_rate=30.0, validate=False,
                 reduction="sum_over_batch_size", name="poisson_nll",
                 dtype=None):
        super().__init__(validate=validate, reduction=reduction, name=name,
                         dtype=dtype)
        self.max_log_rate = _validation.check_float(
            "max_log_rate", max_log_rate
        )

    def _make_distribution(self, params):
        return tfd.Poisson(log_rate=tf.minimum(params, self.max_log_rate))

    def get_config(self):
        config = super().get_config()
        config["max_log_rate"] = self.max_log_rate
        return config

    def _support_checks(self, y_true):
        return [(
            tf.reduce_all((y_true >= 0.0) & (tf.round(y_true) == y_true)),
            "non-negative integers",
        )]
