"""Continuous Bernoulli likelihood for data in [0, 1]."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.losses.base import LikelihoodLoss

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="keras_vae")
class ContinuousBernoulliNLL(LikelihoodLoss):
    """Negative log-likelihood of independent continuous Bernoulli elements.

    The normalised version of "binary cross-entropy on grey levels"
    (Loaiza-Ganem & Cunningham 2019), from one logit `l` per element:

    ```none
    log p(x | l) = sum_d [ x_d * l_d - softplus(l_d) + log C(l_d) ]
    C(l) = l / tanh(l / 2)             (C(0) = 2; x_d in [0, 1])
    ```

    `tfd.ContinuousBernoulli` evaluates `log C` with a Taylor expansion
    near `l = 0`, where the closed form is 0 / 0, so logits at or near 0
    are finite and smooth.

    Args:
        validate: check that `y_true` lies in [0, 1] (see `LikelihoodLoss`).
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:

    ```python
    logits = keras.layers.Dense(ContinuousBernoulliNLL.params_size((784,)))(h)
    model.compile(loss=keras_vae.losses.ContinuousBernoulliNLL())
    ```

    References: Loaiza-Ganem & Cunningham, "The continuous Bernoulli: fixing
    a pervasive error in variational autoencoders", NeurIPS 2019.
    """

    PARAMS_PER_ELEMENT = 1

    def __init__(self, validate=False, reduction="sum_over_batch_size",
                 name="continuous_bernoulli_nll", dtype=None):
        super().__init__(validate=validate, reduction=reduction, name=name,
                         dtype=dtype)

    def _make_distribution(self, params):
        return tfd.ContinuousBernoulli(logits=params)

    def _support_checks(self, y_true):
        return [(
            tf.reduce_all((y_true >= 0.0) & (y_true <= 1.0)),
            "in [0, 1]",
        )]
