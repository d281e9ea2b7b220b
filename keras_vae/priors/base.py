"""Base class of latent priors p(z)."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


class Prior(keras.layers.Layer):
    """A prior p(z) over a latent of shape `event_shape`, as a Keras layer.

    Priors are layers so that learned priors own trainable weights that the
    model that holds them (through `KLRegularizer(prior=...)`) trains and
    saves. A subclass implements `distribution(event_shape)`, returning a
    TFP distribution with that event shape and batch shape `()`, in
    float32. `event_shape` is the shape of one z without the batch axis:
    the int `L` for a flat latent, a tuple `(h, w, C)` for a spatial one,
    or an int tensor when the spatial size is known only at run time.

    Hooks a subclass may declare:
    - `flat_only = True`: the prior is defined for flat `(L,)` latents
      only; `check_event_shape` refuses others with a clear error.
    - `needs_encoder = True`: the prior is defined through the model's
      encoder (the VampPrior); `VAEModel` calls
      `attach_encoder(encoder, input_shape)` once, and builds the prior
      itself (a `KLRegularizer` leaves it unbuilt).
    """

    flat_only = False
    needs_encoder = False

    def distribution(self, event_shape):
        raise TypeError(
            f"{type(self).__name__} must define `distribution(event_shape)`; "
            "Prior is a base class."
        )

    def attach_encoder(self, encoder, input_shape):
        """`encoder(u)` -> posterior parameters list; for `needs_encoder`
        priors, called by `VAEModel`. The base class needs none."""
        del encoder, input_shape

    def check_event_shape(self, event_shape, who):
        """Raises a clear error when the prior cannot serve this latent."""
        event_shape = tuple(event_shape)
        if self.flat_only and len(event_shape) != 1:
            raise ValueError(
                f"{type(self).__name__} (the prior of {who}) is defined for "
                "flat latents of shape (batch, L). Received a latent of "
                f"shape (batch, *{event_shape}). Use "
                "GaussianEncoderHead(flatten=True), or a StandardNormal / "
                "LearnedGaussian prior, which take any shape."
            )

    def call(self, inputs):
        # Priors are not called in a model graph; they are queried by
        # KLRegularizer and VAEModel through `distribution`.
        return inputs


def event_shape_of(event_shape):
    """`event_shape` as a tuple of ints, or an int32 tensor when dynamic.

    Takes an int L (a flat latent, as the first round's priors did), a
    tuple / TensorShape (unknown axes as None are not allowed here: pass
    the run-time shape), or an int tensor.
    """
    if isinstance(event_shape, int):
        return (event_shape,)
    if tf.is_tensor(event_shape):
        static = tf.get_static_value(event_shape)
        if static is not None:
            return tuple(int(d) for d in static)
        return tf.cast(event_shape, tf.int32)
    return tuple(int(d) for d in event_shape)


def standard_normal_distribution(event_shape, loc=0.0, scale=1.0):
    """N(loc, scale^2) over `event_shape` with batch shape ().

    `Independent(Normal)` over every axis, the family of a diagonal
    Gaussian posterior, so the KL is analytic (against a full-covariance
    posterior too: `keras_vae.objectives.analytic_kl`). `loc` and `scale`
    broadcast to `event_shape`.
    """
    shape = event_shape_of(event_shape)
    rank = len(shape) if isinstance(shape, tuple) else int(shape.shape[0])
    loc = tf.broadcast_to(tf.cast(loc, tf.float32), shape)
    scale = tf.broadcast_to(tf.cast(scale, tf.float32), shape)
    return tfd.Independent(
        tfd.Normal(loc, scale), reinterpreted_batch_ndims=rank
    )
