"""Gaussian likelihood for real-valued data, fixed or learned scale."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import _validation
from keras_vae.losses import _utils
from keras_vae.losses.base import LikelihoodLoss

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="keras_vae")
class GaussianNLL(_utils.OptionalScaleParams, LikelihoodLoss):
    """Negative log-likelihood of independent Gaussian elements.

    With a fixed observation scale `sigma` the decoder emits the mean only
    (one parameter per element). With `scale=None` the scale is learned: the
    decoder emits `(loc, raw_scale)` (two per element) and

    ```none
    sigma_d = softplus(raw_scale_d) + min_scale
    log p(x | mu, sigma) = sum_d [ -0.5 ((x_d - mu_d) / sigma_d)**2
                                   - log sigma_d - 0.5 log(2 pi) ]
    ```

    For data of shape `(B, ..., C)` a learned-scale decoder emits
    `(B, ..., 2 * C)`: the `C` locations first, then the `C` raw scales
    (`tf.split(params, 2, axis=-1)`).

    Args:
        scale: a positive float, the fixed standard deviation of every
            element; or `None` to learn it from the decoder's output.
        min_scale: positive float added to the softplus of the raw scale
            (learned scale only), so the density stays bounded.
        validate: check that `y_true` is finite (see `LikelihoodLoss`).
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:

    ```python
    # Fixed scale: the decoder emits the mean.
    loc = keras.layers.Dense(GaussianNLL.params_size((784,)))(h)
    model.compile(loss=keras_vae.losses.GaussianNLL(scale=0.1))

    # Learned scale: the decoder emits (loc, raw_scale).
    params = keras.layers.Dense(
        GaussianNLL.params_size((784,), learned_scale=True))(h)
    model.compile(loss=keras_vae.losses.GaussianNLL(scale=None))
    ```
    """

    PARAMS_PER_ELEMENT = 1  # fixed scale; `params_per_element` is 2 if None

    def __init__(self, scale=1.0, min_scale=1e-3, validate=False,
                 reduction="sum_over_batch_size", name="gaussian_nll",
                 dtype=None):
        super().__init__(validate=validate, reduction=reduction, name=name,
                         dtype=dtype)
        if scale is not None:
            try:
                scale = _validation.check_float(
                    "scale", scale, minimum=0.0, strict=True
                )
            except ValueError:
                raise _validation.invalid(
                    "scale", "a float > 0, or None for a learned scale", scale
                ) from None
        self.scale = scale
        self.min_scale = _validation.check_float(
            "min_scale", min_scale, minimum=0.0, strict=True
        )

    @property
    def learned_scale(self):
        """Whether the scale comes from the decoder (`scale=None`)."""
        return self.scale is None

    def _make_distribution(self, params):
        if not self.learned_scale:
            return tfd.Normal(loc=params, scale=self.scale)
        loc, raw_scale = self._split_params(params)
        return tfd.Normal(
            loc=loc, scale=tf.nn.softplus(raw_scale) + self.min_scale
        )

    def _support_checks(self, y_true):
        return [(tf.reduce_all(tf.math.is_finite(y_true)), "finite")]

    def _check_params_shape(self, y_true, params):
        try:
            super()._check_params_shape(y_true, params)
        except ValueError as error:
            y_last, p_last = y_true.shape[-1], params.shape[-1]
            if not self.learned_scale and p_last == 2 * y_last:
                hint = (
                    " The decoder emits 2 parameters per element, as for a "
                    "learned scale: use `GaussianNLL(scale=None)`."
                )
            elif self.learned_scale and p_last == y_last:
                hint = (
                    " With `scale=None` the decoder must emit (loc, "
                    "raw_scale), 2 per element: size it with "
                    "`GaussianNLL.params_size(event_shape, "
                    "learned_scale=True)`, or pass a fixed `scale`."
                )
            else:
                raise
            raise ValueError(f"{error}.{hint}") from None

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "min_scale": self.min_scale})
        return config
