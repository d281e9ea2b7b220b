"""MissingIndicator: the encoder sees which entries are missing."""

import math

import keras
import tensorflow as tf

from keras_vae import _validation as v

OUTPUTS = ("concat", "pair")


@keras.saving.register_keras_serializable(package="keras_vae")
class MissingIndicator(keras.layers.Layer):
    """Fills the missing entries of its input and adds the mask beside them.

    ```none
    m   = 1 where x is observed, 0 where it is NaN (or `missing_values`)
    out = concat([where(m, x, fill_value), m], axis=-1)     output_mode="concat"
        = (where(m, x, fill_value), m)                       output_mode="pair"
    ```

    Put it right after `keras.Input` in the encoder of a `VAEModel`
    compiled with `missing_values`: the model then hands this layer the
    raw rows, every missing entry as NaN whatever marker `compile` was
    given, and the encoder tells a missing entry from an observed value
    equal to the fill (without it the model fills missing entries with 0
    before the encoder runs, so q(z | x_obs) cannot know which entries
    were missing). Training, `encode`, `elbo`, `log_likelihood`, `impute`
    and the exported signatures all run the same graph. The input must
    feed this layer and nothing else (`compile` checks).

    Outside a `VAEModel` (a plain Keras model on NaN-marked rows) it works
    the same; `missing_values` then also marks entries equal to that
    number as missing.

    Args:
        missing_values: None (default: NaN marks missing entries) or a
            number that also does.
        fill_value: float, what a missing entry becomes (default 0).
        output_mode: `"concat"` (default: one tensor, twice the last
            axis) or `"pair"` (the filled tensor and the mask).

    Call arguments:
        inputs: a float tensor `(batch, ..., d)` with missing entries.

    Input shape:
        `(batch, ..., d)`.

    Output shape:
        `(batch, ..., 2 d)` (`"concat"`), or two tensors `(batch, ..., d)`
        (`"pair"`); the mask is 1.0 (observed) or 0.0 (missing), in the
        layer's compute dtype.

    Example:

    ```python
    x_in = keras.Input((784,))
    h = keras_vae.MissingIndicator()(x_in)          # (None, 1568)
    h = keras.layers.Dense(256, activation="relu")(h)
    ...
    vae.compile(loss=keras_vae.losses.GaussianNLL(),
                missing_values=float("nan"))
    ```

    References: Mattei & Frellsen, "MIWAE: Deep Generative Modelling and
    Imputation of Incomplete Data Sets", 2019 (the mask as an encoder
    input); Nazábal et al., "Handling Incomplete Heterogeneous Data using
    VAEs", 2020.
    """

    def __init__(self, missing_values=None, fill_value=0.0,
                 output_mode="concat", **kwargs):
        super().__init__(**kwargs)
        if missing_values is not None and (
            isinstance(missing_values, bool)
            or not isinstance(missing_values, (int, float))
        ):
            raise v.invalid("missing_values", "None or a number",
                            missing_values)
        # NaN always marks a missing entry: NaN is stored as None.
        self.missing_values = (
            None if missing_values is None or math.isnan(missing_values)
            else float(missing_values))
        self.fill_value = v.check_float("fill_value", fill_value)
        if not math.isfinite(self.fill_value):
            raise v.invalid("fill_value", "a finite float", fill_value)
        self.output_mode = v.check_choice("output_mode", output_mode,
                                          OUTPUTS)

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                "MissingIndicator expects rows of shape (batch, ..., d). "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def observed(self, x):
        """The boolean mask of the observed entries of `x`."""
        mask = tf.ones_like(x, dtype=tf.bool)
        if x.dtype.is_floating:
            mask = tf.logical_not(tf.math.is_nan(x))
        if self.missing_values is not None:
            mask = tf.logical_and(
                mask, tf.not_equal(x, tf.cast(self.missing_values, x.dtype)))
        return mask

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        mask = self.observed(x)
        filled = tf.where(mask, x, tf.cast(self.fill_value, x.dtype))
        filled = tf.cast(filled, self.compute_dtype)
        m = tf.cast(mask, self.compute_dtype)
        if self.output_mode == "pair":
            return filled, m
        return tf.concat([filled, m], axis=-1)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if self.output_mode == "pair":
            return shape, shape
        last = None if shape[-1] is None else 2 * shape[-1]
        return shape[:-1] + (last,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "missing_values": self.missing_values,
            "fill_value": self.fill_value,
            "output_mode": self.output_mode,
        })
        return config
