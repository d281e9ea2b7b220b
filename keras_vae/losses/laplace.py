"""Laplace likelihood (the L1 reconstruction), fixed or learned scale."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import _validation
from keras_vae.losses import _utils
from keras_vae.losses.base import LikelihoodLoss

tfd = tfp.distributions

LEARNED_SCALAR = "learned_scalar"


@keras.saving.register_keras_serializable(package="keras_vae")
class LaplaceNLL(_utils.OptionalScaleParams, LikelihoodLoss):
    """Negative log-likelihood of independent Laplace elements: L1 loss.

    ```none
    log p(x | mu, b) = sum_d [ -|x_d - mu_d| / b_d - log(2 b_d) ]

    scale=b (a float)        : b_d = b; the decoder emits mu
    scale=None               : the decoder emits (mu, r);  b_d = softplus(r_d) + min_scale
    scale="learned_scalar"   : the decoder emits (mu, s);  b_d = exp(s_d),
                               s one learned scalar broadcast by `SharedLogScale`
    ```

    With a fixed scale b the loss is the L1 reconstruction error divided by
    b plus a constant (D log 2b for D elements). The learned global scale is
    the reconstruction term of the latent-diffusion autoencoder
    (`LPIPSWithDiscriminator` in CompVis latent-diffusion: `rec / exp(logvar)
    + logvar` with one scalar `logvar`, initialised at 0, which is the
    Laplace NLL with `b = exp(logvar)` up to the constant D log 2). Keras
    losses hold no trainable state, so the scalar lives in the model: end
    the decoder with `keras_vae.SharedLogScale()`, which appends the
    learned `s` as a second half of the parameters, and the model's
    optimizer trains it with the rest (as latent-diffusion intended, "train
    encoder+decoder+logvar"; its published optimizer omits `logvar`, which
    therefore stays at 0 there: use `scale=1.0` for that exact recipe).

    For data of shape `(B, ..., C)` a learned-scale decoder emits
    `(B, ..., 2 * C)`: the `C` locations first, then the `C` scale
    parameters (`tf.split(params, 2, axis=-1)`). The mean, what
    `reconstruct` returns, is mu.

    Args:
        scale: a positive float, the fixed scale b of every element; None
            to learn it per element from the decoder's output; or
            `"learned_scalar"` for one learned log-scale (from a
            `SharedLogScale` layer at the end of the decoder).
        min_scale: positive float added to the softplus of the raw scale
            (`scale=None` only), so the density stays bounded.
        validate: check that `y_true` is finite (see `LikelihoodLoss`).
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:

    ```python
    # Fixed scale: the decoder emits the mean.
    model.compile(loss=keras_vae.losses.LaplaceNLL(scale=1.0))

    # One learned global scale (latent diffusion's logvar).
    loc = keras.layers.Conv2D(3, 3, padding="same")(h)
    params = keras_vae.SharedLogScale()(loc)          # (B, h, w, 6)
    vae = keras_vae.VAEModel(x_in, params)
    vae.compile(loss=keras_vae.losses.LaplaceNLL(scale="learned_scalar"))
    ```

    References: Rombach et al., "High-Resolution Image Synthesis with
    Latent Diffusion Models", 2022 (the KL autoencoder's loss).
    """

    PARAMS_PER_ELEMENT = 1  # fixed scale; `params_per_element` is 2 if learned

    def __init__(self, scale=1.0, min_scale=1e-3, validate=False,
                 reduction="sum_over_batch_size", name="laplace_nll",
                 dtype=None):
        super().__init__(validate=validate, reduction=reduction, name=name,
                         dtype=dtype)
        if scale is not None and scale != LEARNED_SCALAR:
            try:
                scale = _validation.check_float(
                    "scale", scale, minimum=0.0, strict=True)
            except ValueError:
                raise _validation.invalid(
                    "scale", "a float > 0, None for a learned scale per "
                    f"element, or '{LEARNED_SCALAR}'", scale) from None
        self.scale = scale
        self.min_scale = _validation.check_float(
            "min_scale", min_scale, minimum=0.0, strict=True)

    @property
    def learned_scale(self):
        """Whether the scale comes from the decoder (None or a scalar)."""
        return self.scale is None or self.scale == LEARNED_SCALAR

    def scale_of(self, params):
        """The scale b of every element, for the decoder's `params`."""
        params = tf.cast(tf.convert_to_tensor(params), tf.float32)
        return self._make_distribution(params).scale

    def _make_distribution(self, params):
        if not self.learned_scale:
            return tfd.Laplace(loc=params, scale=self.scale)
        loc, raw = self._split_params(params)
        if self.scale is None:
            scale = tf.nn.softplus(raw) + self.min_scale
        else:
            scale = tf.exp(raw)
        return tfd.Laplace(loc=loc, scale=scale)

    def _support_checks(self, y_true):
        return [(tf.reduce_all(tf.math.is_finite(y_true)), "finite")]

    def _check_params_shape(self, y_true, params):
        try:
            super()._check_params_shape(y_true, params)
        except ValueError as error:
            y_last, p_last = y_true.shape[-1], params.shape[-1]
            if not self.learned_scale and p_last == 2 * y_last:
                hint = (" The decoder emits 2 parameters per element, as for "
                        "a learned scale: use `LaplaceNLL(scale=None)` or "
                        f"`LaplaceNLL(scale='{LEARNED_SCALAR}')`.")
            elif self.learned_scale and p_last == y_last:
                hint = (" A learned scale needs (loc, scale parameter), 2 per "
                        "element: end the decoder with "
                        "`keras_vae.SharedLogScale()` for one learned scalar, "
                        "size it with `LaplaceNLL.params_size(event_shape, "
                        "learned_scale=True)`, or pass a fixed `scale`.")
            else:
                raise
            raise ValueError(f"{error}.{hint}") from None

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "min_scale": self.min_scale})
        return config
