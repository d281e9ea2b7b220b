"""Base class of latent priors p(z)."""

import keras


class Prior(keras.layers.Layer):
    """A prior p(z) over an `L`-dimensional latent, as a Keras layer.

    Priors are layers so that learned priors own trainable weights that the
    model that holds them (through `KLRegularizer(prior=...)`) trains and
    saves. A subclass implements `distribution(latent_dim)`, returning a TFP
    distribution with event shape `(latent_dim,)` and batch shape `()`, in
    float32.
    """

    def distribution(self, latent_dim):
        raise TypeError(
            f"{type(self).__name__} must define `distribution(latent_dim)`; "
            "Prior is a base class."
        )

    def call(self, inputs):
        # Priors are not called in a model graph; they are queried by
        # KLRegularizer and VAEModel through `distribution`.
        return inputs
