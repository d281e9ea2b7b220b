"""ReparameterizedSample: z = loc + scale * eps."""

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.layers.latent_sample import LatentSample
from keras_vae.posteriors import (
    check_input_shape,
    check_loc_scale,
    reparameterize,
)
from keras_vae.random import standard_normal

INFERENCE_MODES = ("mean", "sample")


@keras.saving.register_keras_serializable(package="keras_vae")
class ReparameterizedSample(LatentSample):
    """Draws z ~ q(z | x) = N(loc, Σ) by the reparameterisation trick.

    ```none
    eps ~ N(0, I)
    z   = loc + scale * eps          (diagonal scale, shape (B, L))
    z   = loc + scale @ eps          (lower-triangular scale, shape (B, L, L))
    ```

    Gradients flow to `loc` and `scale` through the deterministic map, which
    is what makes the Monte Carlo ELBO differentiable (Kingma & Welling,
    2013). The noise is seeded by a `keras.random.SeedGenerator`, so a fixed
    `seed` gives reproducible draws, also after `.keras` save/load, and the
    same draws with and without XLA (see `keras_vae.random`).

    `VAEModel` uses `draw(loc, scale, num_samples)` to take K samples per
    example at once; the layer's `call` is what a plain Keras model sees.

    Args:
        seed: int or None, seed of the noise.
        inference: what the layer returns when `training` is false
            (`predict`, `evaluate`, serving): `"mean"` (default; returns
            `loc`, a deterministic reconstruction) or `"sample"` (a draw, as
            in training).

    Call arguments:
        inputs: `(loc, scale)` from `GaussianEncoderHead` (or
            `KLRegularizer`).
        training: Python bool; draws when true.

    Input shape:
        `((batch, L), (batch, L))` or `((batch, L), (batch, L, L))`; or
        `((batch, *event), (batch, *event))` for a latent of any shape.

    Output shape:
        `(batch, L)` (or `(batch, *event)`).

    Example:

    ```python
    q = keras_vae.GaussianEncoderHead(latent_dim=8)(h)
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    ```

    References: Kingma & Welling, "Auto-Encoding Variational Bayes", 2013;
    Rezende et al., "Stochastic Backpropagation", 2014.
    """

    family = "gaussian"

    def __init__(self, seed=None, inference="mean", **kwargs):
        # Keep the float32 (loc, scale) of the head float32 under mixed
        # precision: no autocast of the inputs to the compute dtype.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.seed = v.check_seed("seed", seed)
        self.inference = v.check_choice("inference", inference, INFERENCE_MODES)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        check_input_shape(input_shape, "ReparameterizedSample")

    def draw(self, loc, scale, num_samples=1, seed=None):
        """`num_samples` draws per row, folded into the batch axis.

        Returns z of shape `(num_samples * B, *event)` (event: `(L,)`, or
        the latent's shape after the batch axis), sample-major: rows
        `k * B ... (k + 1) * B - 1` are the k-th draw for the whole batch.
        With `seed` (an int tensor of shape (2,)) the draw is a fixed
        function of it and the layer's noise state is left alone.
        """
        shape = tf.concat([[num_samples], tf.shape(loc)], axis=0)
        eps = standard_normal(shape, self.seed_generator, seed=seed)
        z = reparameterize(loc, scale, eps)
        return tf.reshape(z, tf.concat([[-1], tf.shape(loc)[1:]], 0))

    def draw_latent(self, params, context=(), num_samples=1, seed=None,
                    training=True):
        """`LatentSample` protocol: K draws; log q is the Gaussian's."""
        loc, scale = params
        return self.draw(loc, scale, num_samples, seed), None

    def mode(self, params, context=()):
        return keras.ops.cast(params[0], "float32")

    def call(self, inputs, training=None):
        loc, scale = inputs
        check_loc_scale(loc, scale, "ReparameterizedSample")  # also once built
        if training or self.inference == "sample":
            return self.draw(loc, scale, 1)
        return keras.ops.cast(loc, "float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def compute_output_spec(self, inputs, training=None):
        return keras.KerasTensor(tuple(inputs[0].shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({"seed": self.seed, "inference": self.inference})
        return config
