"""The uniform prior over N one-hot categorical latents."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.priors.base import Prior

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="keras_vae")
class UniformCategorical(Prior):
    """p(z) = prod_n OneHotCategorical(z_n; 1/C, ..., 1/C), the discrete prior.

    ```none
    log p(z)             = -N log C                  for every one-hot z
    KL(q || p)           = sum_n sum_c pi_nc log pi_nc + N log C
    ```

    The prior of `GumbelSoftmaxHead` / `GumbelSoftmaxSample` latents: a
    distribution with batch shape `()` and event shape `(N, C)`, the shape
    of `keras_vae.posteriors.categorical_posterior`, so TFP's KL between
    them is analytic. It has no weights; `build((None, N, C))` (done by the
    layer that holds it) fixes N and C.

    Example:

    ```python
    prior = keras_vae.priors.UniformCategorical()
    prior.build((None, 20, 10))
    prior.distribution(20).log_prob(z)      # -20 log 10 for one-hot z
    ```

    References: Jang et al., 2016; Maddison et al., 2016.
    """

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3 or shape[1] is None or shape[2] is None or (
            shape[2] < 2
        ):
            raise ValueError(
                "UniformCategorical expects the latent shape (batch, N, C) "
                "with known N and C >= 2. Received: "
                f"input_shape={shape}"
            )
        self.num_variables = int(shape[1])
        self.num_classes = int(shape[2])

    def distribution(self, event_shape=None):
        """Independent(OneHotCategorical): batch (), event (N, C), float32.

        `event_shape`, when given, is `(N, C)` (or the int N, the number of
        latents) and must match the built shape.
        """
        latent_dim = event_shape
        if isinstance(event_shape, (tuple, list)) and len(event_shape) == 2:
            if tuple(event_shape) != (self.num_variables, self.num_classes):
                raise ValueError(
                    "UniformCategorical was built for (N, C) = "
                    f"{(self.num_variables, self.num_classes)}. Received: "
                    f"event_shape={tuple(event_shape)!r}"
                )
            latent_dim = None
        if not self.built:
            raise ValueError(
                "UniformCategorical needs `build((None, N, C))` before "
                "`distribution`, to know the number of latents and classes."
            )
        if (
            isinstance(latent_dim, int)
            and not isinstance(latent_dim, bool)
            and latent_dim != self.num_variables
        ):
            raise ValueError(
                "UniformCategorical was built for "
                f"{self.num_variables} latents. Received: "
                f"latent_dim={latent_dim!r}"
            )
        logits = tf.zeros((self.num_variables, self.num_classes), tf.float32)
        return tfd.Independent(
            tfd.OneHotCategorical(logits=logits, dtype=tf.float32),
            reinterpreted_batch_ndims=1,
        )
