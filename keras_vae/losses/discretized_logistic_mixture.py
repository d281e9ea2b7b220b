"""Mixture of discretized logistics for quantised data (e.g. 8-bit pixels)."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import _validation
from keras_vae.losses import _utils
from keras_vae.losses.base import LikelihoodLoss

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="keras_vae")
class DiscretizedLogisticMixtureNLL(LikelihoodLoss):
    """Negative log-likelihood of a mixture of discretized logistics.

    Data `x` lie in [0, 1] on the grid `j / (N - 1)`, `N = num_bins` (e.g.
    `pixel / 255`). Each element has its own mixture of `M` logistics,
    binned at the grid's midpoints, the two edge bins taking the tails:

    ```none
    j = round(x * (N - 1)),  h = 1 / (2 (N - 1))        (half a bin)
    F_m(t) = sigmoid((t - mu_m) / s_m)
    P_m(j) = F_m(x + h)                  if j = 0
             1 - F_m(x - h)              if j = N - 1
             F_m(x + h) - F_m(x - h)     otherwise
    log p(x | w, mu, s) = sum_d log sum_m softmax(w_d)_m P_{d, m}(j_d)
    s_m = exp(clip(log_s_m, min_log_scale, max_log_scale))
    ```

    Locations `mu` and log-scales are in data units (`mu = 0` is the first
    level, `mu = 1` the last); the decoder emits them raw, with no
    activation, and a location outside [0, 1] just piles its mass into an
    edge bin. It is built from TFP as `MixtureSameFamily(Categorical(w),
    QuantizedDistribution(Logistic(...), low=0, high=N - 1))` over the
    level `j`, which evaluates the bin masses in log space (finite for
    narrow components far from `x`, unlike a plain difference of CDFs).

    Layout: for data of shape `(B, ..., C)` the decoder emits
    `(B, ..., 3 * M * C)`, read as `(B, ..., C, 3 * M)`: per element the `M`
    mixture logits, then the `M` locations, then the `M` log-scales.

    Unlike PixelCNN++ (Salimans et al. 2017), channels are independent
    given the decoder output: there is no autoregressive coupling of the
    R, G, B means within a pixel, so any decoder shape works (Dense on flat
    data, convolutions on images).

    `distribution(params)` is over the integer levels `j` (divide a sample
    by `N - 1` for data units). `mean(params)` is in data units: the
    mixture-weighted locations, each clipped to [0, 1] (an approximation
    of the discretized mean that ignores the tails' asymmetry at the edges).

    Args:
        num_components: number of mixture components `M` per element.
        num_bins: number of levels `N` of the data (256 for 8-bit).
        min_log_scale: lower bound of the log-scale, in data units; keeps
            the density bounded (-7 as in PixelCNN++).
        max_log_scale: upper bound of the log-scale (default 7: a scale of
            ~1100 data units, far wider than [0, 1]); above about 8 the
            mass of a bin underflows float32 and the loss would be inf with
            NaN gradients.
        validate: check that `y_true` lies in [0, 1] on the grid
            `j / (N - 1)` (to 0.01 of a bin) (see `LikelihoodLoss`).
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:

    ```python
    # 32x32 RGB images scaled to [0, 1] (pixel / 255).
    params = keras.layers.Conv2D(
        DiscretizedLogisticMixtureNLL.params_size((3,), num_components=5),
        3, padding="same")(h)
    model.compile(loss=keras_vae.losses.DiscretizedLogisticMixtureNLL())
    ```

    References: Salimans et al., "PixelCNN++: improving the PixelCNN with
    discretized logistic mixture likelihood and other modifications", ICLR
    2017.
    """

    PARAMS_PER_ELEMENT = 15  # the default; 3 * num_components

    def __init__(self, num_components=5, num_bins=256, min_log_scale=-7.0,
                 max_log_scale=7.0, validate=False, reduction="sum_over_batch_size",
                 name="discretized_logistic_mixture_nll", dtype=None):
        super().__init__(validate=validate, reduction=reduction, name=name,
                         dtype=dtype)
        self.num_components = _validation.check_positive_int(
            "num_components", num_components
        )
        num_bins = _validation.check_positive_int("num_bins", num_bins)
        if num_bins < 2:
            raise _validation.invalid("num_bins", "an integer >= 2", num_bins)
        self.num_bins = num_bins
        self.min_log_scale = _validation.check_float(
            "min_log_scale", min_log_scale
        )
        self.max_log_scale = _validation.check_float(
            "max_log_scale", max_log_scale
        )
        if self.max_log_scale <= self.min_log_scale:
            raise _validation.invalid(
                "max_log_scale", f"a float > min_log_scale={self.min_log_scale}",
                max_log_scale,
            )

    @property
    def params_per_element(self):
        return 3 * self.num_components

    @_utils.class_or_instance_method
    def params_size(owner, event_shape, num_components=None):
        """Number of parameters the decoder must emit for one example.

        Args:
            event_shape: shape of one data example (without batch axis), or
                of one position's channels, e.g. `(784,)` or `(3,)`.
            num_components: mixture size `M`; defaults to 5 on the class,
                and to the loss's own `num_components` on an instance.
        """
        if num_components is None:
            if isinstance(owner, DiscretizedLogisticMixtureNLL):
                num_components = owner.num_components
            else:
                num_components = owner.PARAMS_PER_ELEMENT // 3
        return 3 * num_components * _utils.num_elements(event_shape)

    def _components(self, params):
        """(logits, locs, log_scales), each `(..., C, M)`, in data units."""
        per_element = _utils.split_components(params, self.params_per_element)
        logits, locs, log_scales = tf.split(per_element, 3, axis=-1)
        return logits, locs, tf.clip_by_value(
            log_scales, self.min_log_scale, self.max_log_scale
        )

    def _make_distribution(self, params):
        logits, locs, log_scales = self._components(params)
        top = float(self.num_bins - 1)
        # In level units; the -0.5 shift turns QuantizedDistribution's
        # (j - 1, j] bins into rounding bins (j - 0.5, j + 0.5].
        logistic = tfd.Logistic(
            loc=locs * top - 0.5, scale=tf.exp(log_scales) * top
        )
        return tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(logits=logits),
            components_distribution=tfd.QuantizedDistribution(
                logistic, low=0.0, high=top
            ),
        )

    def _prepare_y_true(self, y_true):
        return tf.round(y_true * (self.num_bins - 1))

    def mean(self, params):
        """Mixture-weighted locations clipped to [0, 1], in data units."""
        params = tf.cast(tf.convert_to_tensor(params), tf.float32)
        logits, locs, _ = self._components(params)
        weights = tf.nn.softmax(logits, axis=-1)
        return tf.reduce_sum(
            weights * tf.clip_by_value(locs, 0.0, 1.0), axis=-1
        )

    def _support_checks(self, y_true):
        levels = y_true * (self.num_bins - 1)
        return [(
            tf.reduce_all(
                (y_true >= 0.0)
                & (y_true <= 1.0)
                & (tf.abs(levels - tf.round(levels)) <= 0.01)
            ),
            f"in [0, 1] on the grid j / {self.num_bins - 1}",
        )]

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_components": self.num_components,
            "num_bins": self.num_bins,
            "min_log_scale": self.min_log_scale,
            "max_log_scale": self.max_log_scale,
        })
        return config
