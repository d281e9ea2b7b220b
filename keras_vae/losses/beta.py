"""Beta likelihood for data in the open interval (0, 1)."""

import numbers

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import _validation
from keras_vae.losses.base import LikelihoodLoss

tfd = tfp.distributions


# The smallest epsilon with 1 - epsilon < 1 in float32.
_MIN_EPSILON = 2.0 ** -24


@keras.saving.register_keras_serializable(package="keras_vae")
class BetaNLL(LikelihoodLoss):
    """Negative log-likelihood of independent Beta elements.

    The decoder emits two raw parameters per element, made positive with a
    softplus; the data are clipped away from 0 and 1, where the density can
    be 0 or infinite:

    ```none
    a_d = softplus(raw_a_d) + min_concentration
    b_d = softplus(raw_b_d) + min_concentration
    x'_d = clip(x_d, epsilon, 1 - epsilon)
    log p(x | a, b) = sum_d [ (a_d - 1) log x'_d + (b_d - 1) log(1 - x'_d)
                              - lbeta(a_d, b_d) ]
    mean = a / (a + b)
    ```

    For data of shape `(B, ..., C)` the decoder emits `(B, ..., 2 * C)`:
    the `C` raw `a` (`concentration1`) first, then the `C` raw `b`
    (`concentration0`). The log-likelihood compiles under XLA; sampling
    from the distribution uses gamma draws, which may not.

    Args:
        min_concentration: positive float added to both softplus outputs.
        epsilon: float in [2**-24, 0.5); data are clipped to
            `[epsilon, 1 - epsilon]` before scoring, so exact 0s and 1s
            (e.g. black pixels) give a finite loss.
        validate: check that `y_true` lies in [0, 1] (see `LikelihoodLoss`).
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:

    ```python
    params = keras.layers.Dense(BetaNLL.params_size((784,)))(h)
    model.compile(loss=keras_vae.losses.BetaNLL())
    ```
    """

    PARAMS_PER_ELEMENT = 2

    def __init__(self, min_concentration=1e-3, epsilon=1e-6, validate=False,
                 reduction="sum_over_batch_size", name="beta_nll",
                 dtype=None):
        super().__init__(validate=validate, reduction=reduction, name=name,
                         dtype=dtype)
        self.min_concentration = _validation.check_float(
            "min_concentration", min_concentration, minimum=0.0, strict=True
        )
        if (
            isinstance(epsilon, bool)
            or not isinstance(epsilon, numbers.Real)
            or not _MIN_EPSILON <= epsilon < 0.5
        ):
            raise _validation.invalid(
                "epsilon", "a float in [2**-24, 0.5) (smaller rounds "
                "1 - epsilon to 1.0 in float32)", epsilon)
        self.epsilon = float(epsilon)

    def _make_distribution(self, params):
        raw_a, raw_b = self._split_params(params)
        return tfd.Beta(
            concentration1=tf.nn.softplus(raw_a) + self.min_concentration,
            concentration0=tf.nn.softplus(raw_b) + self.min_concentration,
        )

    def _prepare_y_true(self, y_true):
        return tf.clip_by_value(y_true, self.epsilon, 1.0 - self.epsilon)

    def _support_checks(self, y_true):
        return [(
            tf.reduce_all((y_true >= 0.0) & (y_true <= 1.0)),
            "in [0, 1]",
        )]

    def get_config(self):
        config = super().get_config()
        config.update({
            "min_concentration": self.min_concentration,
            "epsilon": self.epsilon,
        })
        return config
