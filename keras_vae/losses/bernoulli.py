"""Bernoulli likelihood for binary (or [0, 1]-valued) data."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.losses.base import LikelihoodLoss

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="keras_vae")
class BernoulliNLL(LikelihoodLoss):
    """Negative log-likelihood of independent Bernoulli pixels, from logits.

    ```none
    log p(x | l) = sum_d [ x_d * l_d - softplus(l_d) ]        (x_d in [0, 1])
    ```

    The decoder emits one logit per data element (no activation). Values of
    `x` strictly between 0 and 1 are accepted (the usual "binary
    cross-entropy on grey levels"); the result is then not a normalised
    log-density — use `ContinuousBernoulliNLL` for that.

    Args:
        validate: check that `y_true` lies in [0, 1] (see `LikelihoodLoss`).
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:

    ```python
    logits = keras.layers.Dense(BernoulliNLL.params_size((784,)))(h)
    model.compile(loss=keras_vae.losses.BernoulliNLL())
    ```
    """

    PARAMS_PER_ELEMENT = 1

    def __init__(self, validate=False, reduction="sum_over_batch_size",
                 name="bernoulli_nll", dtype=None):
        super().__init__(validate=validate, reduction=reduction, name=name,
                         dtype=dtype)

    def _make_distribution(self, params):
        # float32 events so that grey levels in (0, 1) are allowed.
        return tfd.Bernoulli(logits=params, dtype=tf.float32)

    def _support_checks(self, y_true):
        return [(
            tf.reduce_all((y_true >= 0.0) & (y_true <= 1.0)),
            "in [0, 1]",
        )]
