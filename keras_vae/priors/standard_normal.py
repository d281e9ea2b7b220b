"""The standard normal prior N(0, I)."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.priors.base import Prior

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="keras_vae")
class StandardNormal(Prior):
    """p(z) = N(z; 0, I), the default prior of `KLRegularizer`.

    ```none
    log p(z) = -0.5 * sum_d z_d^2 - (L / 2) log(2 pi)
    ```

    Example:

    ```python
    q = keras_vae.KLRegularizer(prior=keras_vae.priors.StandardNormal())(q)
    ```
    """

    def distribution(self, latent_dim):
        zeros = tf.zeros([latent_dim], tf.float32)
        return tfd.MultivariateNormalDiag(
            loc=zeros, scale_diag=tf.ones_like(zeros)
        )
