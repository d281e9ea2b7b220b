"""Negative binomial likelihood for over-dispersed count data."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import _validation
from keras_vae.losses.base import LikelihoodLoss

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="keras_vae")
class NegativeBinomialNLL(LikelihoodLoss):
    """Negative log-likelihood of independent negative binomial counts.

    The decoder emits two raw parameters per element, the total count `n`
    (before a softplus) and the logits `l` of the success probability
    `p = sigmoid(l)`:

    ```none
    n_d = softplus(raw_n_d) + min_total_count
    log p(x | n, p) = sum_d [ lgamma(x_d + n_d) - lgamma(x_d + 1)
                              - lgamma(n_d) + n_d log(1 - p_d)
                              + x_d log(p_d) ]
    mean = n * exp(l),   variance = mean / (1 - p)
    ```

    for `x_d` in `{0, 1, 2, ...}` (the number of successes before `n`
    failures, as `tfd.NegativeBinomial`; `n` need not be an integer). For
    data of shape `(B, ..., C)` the decoder emits `(B, ..., 2 * C)`: the `C`
    raw total counts first, then the `C` logits.

    Args:
        min_total_count: positive float added to the softplus of the raw
            total count, so that `n > 0` even when the softplus underflows.
        validate: check that `y_true` holds non-negative integers (see
            `LikelihoodLoss`).
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:

    ```python
    params = keras.layers.Dense(NegativeBinomialNLL.params_size((2000,)))(h)
    model.compile(loss=keras_vae.losses.NegativeBinomialNLL())
    ```
    """

    PARAMS_PER_ELEMENT = 2

    def __init__(self, min_total_count=1e-3, validate=False,
                 reduction="sum_over_batch_size",
                 name="negative_binomial_nll", dtype=None):
        super().__init__(validate=validate, reduction=reduction, name=name,
                         dtype=dtype)
        self.min_total_count = _validation.check_float(
            "min_total_count", min_total_count, minimum=0.0, strict=True
        )

    def _make_distribution(self, params):
        raw_total_count, logits = self._split_params(params)
        return tfd.NegativeBinomial(
            total_count=tf.nn.softplus(raw_total_count)
            + self.min_total_count,
            logits=logits,
            require_integer_total_count=False,
        )

    def _support_checks(self, y_true):
        return [(
            tf.reduce_all((y_true >= 0.0) & (tf.round(y_true) == y_true)),
            "non-negative integers",
        )]

    def get_config(self):
        config = super().get_config()
        config["min_total_count"] = self.min_total_count
        return config
