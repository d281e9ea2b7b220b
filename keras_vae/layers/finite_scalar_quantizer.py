"""FiniteScalarQuantizer: each feature rounded to a few bounded levels."""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.layers import _codebook as cb


def _check_levels(levels):
    ok = (isinstance(levels, (list, tuple)) and len(levels) > 0 and all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool)
        and n >= 2 for n in levels))
    if not ok or math.prod(int(n) for n in levels) >= 2**31:
        raise v.invalid(
            "levels", "a non-empty list of integers >= 2 (one per feature; "
            "product < 2**31)", levels)
    return [int(n) for n in levels]


@keras.saving.register_keras_serializable(package="keras_vae")
class FiniteScalarQuantizer(cb.TracksUsage, cb.SameShapeOutput,
                            keras.layers.Layer):
    """Rounds each of d features to one of L_i levels (FSQ).

    ```none
    per feature i (L = levels[i], eps = epsilon):
        half_l = (L - 1) (1 - eps) / 2
        offset = 0.5 if L is even else 0          (half-offset for even L)
        shift  = tan(offset / half_l)
        b      = tanh(z + shift) * half_l - offset        (bounded)
        output = (round(b) + (b - stop_gradient(b))) / (L // 2)
    the grid of feature i: (j - L // 2) / (L // 2), j = 0 .. L - 1
    code  = sum_i j_i * prod_(i' < i) L_i'    in [0, prod(levels))
    ```

    The output is exactly on the grid; the gradient is the straight-through
    one of rounding (the derivative of the bound). There is no codebook to
    learn and no loss: all prod(levels) grid points are codes, and in
    practice nearly all are used (Mentzer et al.). The bound is the
    paper's, including its `tan` shift for even levels. The input's last
    axis must have `len(levels)` features: put a `Dense(len(levels))`
    before the layer (and one to the decoder's width after it). The grid
    is at unit scale: features near 0 (small activations through a fresh
    projection) all round to the centre, exactly 0, where a ReLU decoder
    has no gradient; normalise them first (e.g. `LayerNormalization`).

    `codes()` gives the integer code of each position, `lookup()` the grid
    vector of a code; `num_codes` is prod(levels) and `log_num_codes` its
    log. The training call records code usage: `usage_metrics()` returns
    `{"perplexity", "codebook_usage"}` as for `VectorQuantizer`.

    Args:
        levels: list of integers >= 2, the number of levels of each
            feature (the paper recommends e.g. [8, 5, 5, 5] for 1000 codes,
            [8, 8, 8, 5, 5, 5] for 64000).
        epsilon: float in (0, 1) (default 1e-3), keeps the bound strictly
            inside the outer levels' rounding intervals.
        usage_window: positive integer (default 100), the window (in
            training steps) of `codebook_usage`.

    Call arguments:
        inputs: features `(batch, ..., len(levels))`.
        training: Python bool; code usage is recorded only when true.

    Input shape:
        `(batch, ..., len(levels))`.

    Output shape:
        `(batch, ..., len(levels))`, float32, values in [-1, 1].

    Example:

    ```python
    h = keras.layers.Dense(4)(x)
    z_q = keras_vae.FiniteScalarQuantizer(levels=[8, 5, 5, 5])(h)
    ```

    References: Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made
    Simple", 2023.
    """

    def __init__(self, levels, epsilon=1e-3, usage_window=100, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.levels = _check_levels(levels)
        self.epsilon = v.check_float("epsilon", epsilon, minimum=0.0,
                                     strict=True)
        if self.epsilon >= 1.0:
            raise v.invalid("epsilon", "a float in (0, 1)", epsilon)
        self.usage_window = v.check_positive_int("usage_window", usage_window)
        self.num_codes = math.prod(self.levels)
        lv = np.asarray(self.levels, "float64")
        self._half_l = (lv - 1.0) * (1.0 - self.epsilon) / 2.0
        self._offset = np.where(lv % 2 == 0, 0.5, 0.0)
        self._shift = np.tan(self._offset / self._half_l)
        self._half_width = np.floor(lv / 2.0)
        self._basis = np.cumprod([1] + self.levels[:-1]).astype("int32")

    @property
    def log_num_codes(self):
        """log prod(levels): the uniform prior's -log p(code) per position."""
        return float(np.sum(np.log(self.levels)))

    def build(self, input_shape):
        cb.check_feature_axis(input_shape, len(self.levels), self.name)
        self._build_usage(self.num_codes)

    def _const(self, array, dtype=None):
        return tf.constant(array, dtype=dtype or cb.float_dtype(self))

    def _bounded(self, inputs):
        inputs = tf.convert_to_tensor(inputs)
        cb.check_feature_axis(inputs.shape, len(self.levels), self.name)
        z = tf.cast(inputs, cb.float_dtype(self))
        return (tf.tanh(z + self._const(self._shift))
                * self._const(self._half_l) - self._const(self._offset))

    def _digits_to_codes(self, rounded):
        digits = tf.cast(rounded + self._const(self._half_width), tf.int32)
        return tf.reduce_sum(digits * self._const(self._basis, tf.int32), -1)

    def codes(self, inputs):
        """The code of each position: int32 `(batch, ...)` in
        [0, prod(levels))."""
        return self._digits_to_codes(tf.round(self._bounded(inputs)))

    def lookup(self, codes):
        """Grid vectors `(batch, ..., len(levels))` of integer `codes`.

        Codes outside [0, prod(levels)) raise a `ValueError` eagerly and fail
        a `tf.debugging` assertion in a graph.
        """
        codes = cb.check_codes(codes, self.num_codes)
        digits = (codes[..., None] // self._const(self._basis, tf.int32)
                  ) % self._const(self.levels, tf.int32)
        half_width = self._const(self._half_width)
        return (tf.cast(digits, cb.float_dtype(self)) - half_width
                ) / half_width

    def call(self, inputs, training=None):
        return self.quantize_with_losses(inputs, training)[0]

    def quantize_with_losses(self, inputs, training=False):
        """`(outputs, [])`: what `call` returns, and no loss (the quantizer
        protocol of `VectorQuantizer.quantize_with_losses`)."""
        b = self._bounded(inputs)
        rounded = tf.round(b)
        if training:
            counts = cb.code_counts(self._digits_to_codes(rounded),
                                    self.num_codes, tf.float32)
            self._update_usage(counts)
        # Exactly on the grid in value; the gradient of the bound.
        return (rounded + (b - tf.stop_gradient(b))) / self._const(
            self._half_width), []

    def _feature_size(self):
        return len(self.levels)

    def get_config(self):
        config = super().get_config()
        config.update({
            "levels": list(self.levels),
            "epsilon": self.epsilon,
            "usage_window": self.usage_window,
        })
        return config
