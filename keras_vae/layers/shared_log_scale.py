"""SharedLogScale: a learned log-scale shared by every element."""

import keras

from keras_vae import _validation as v


@keras.saving.register_keras_serializable(package="keras_vae")
class SharedLogScale(keras.layers.Layer):
    """Appends one learned log-scale to a decoder's output (the location).

    ```none
    loc (B, ..., C)  ->  concat([loc, s * ones_like(loc)], axis=-1)   (B, ..., 2C)
    s : one trainable scalar (per_channel=False) or one per channel (C,)
    ```

    The likelihood then reads `b = exp(s)` as the scale of every element:
    `LaplaceNLL(scale="learned_scalar")` (latent diffusion's learned
    `logvar`, a single scalar initialised at 0). Keras losses hold no
    trainable state; as a weight of the decoder, `s` is trained by the
    model's optimizer, saved with the model and part of every exported
    signature that decodes (so `log_likelihood` uses it). Output in float32
    whatever the dtype policy, so the scale is never rounded to float16.

    Args:
        initial_value: float, the initial log-scale (0: scale 1, as
            latent diffusion's `logvar_init`).
        per_channel: bool; False (default) for one scalar shared by every
            element, True for one per channel (last axis).

    Input shape: `(batch, ..., C)` with C known.

    Output shape: `(batch, ..., 2 * C)`: the input, then the log-scale.

    Example:

    ```python
    loc = keras.layers.Conv2D(3, 3, padding="same")(h)
    params = keras_vae.SharedLogScale()(loc)
    vae.compile(loss=keras_vae.losses.LaplaceNLL(scale="learned_scalar"))
    ```

    References: Rombach et al. 2022 (latent diffusion's KL autoencoder);
    Rybkin, Daniilidis & Levine, "Simple and Effective VAE Training with
    Calibrated Decoders", 2021 (a shared learned variance).
    """

    def __init__(self, initial_value=0.0, per_channel=False, **kwargs):
        # float32 whatever the global policy: the scale is never rounded.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.initial_value = v.check_float("initial_value", initial_value)
        self.per_channel = v.check_bool("per_channel", per_channel)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                "SharedLogScale needs the last (channel) axis of its input "
                f"to be known. Received: input_shape={tuple(input_shape)}")
        self.log_scale = self.add_weight(
            shape=(int(channels),) if self.per_channel else (),
            initializer=keras.initializers.Constant(self.initial_value),
            dtype="float32", name="log_scale")

    def call(self, loc):
        loc = keras.ops.cast(loc, "float32")
        s = keras.ops.cast(self.log_scale, "float32")
        return keras.ops.concatenate(
            [loc, keras.ops.zeros_like(loc) + s], axis=-1)

    def compute_output_shape(self, input_shape):
        last = input_shape[-1]
        return tuple(input_shape[:-1]) + (None if last is None else 2 * last,)

    def get_config(self):
        return {**super().get_config(), "initial_value": self.initial_value,
                "per_channel": self.per_channel}
