"""The standard normal prior N(0, I)."""

import keras

from keras_vae.priors.base import Prior, standard_normal_distribution


@keras.saving.register_keras_serializable(package="keras_vae")
class StandardNormal(Prior):
    """p(z) = N(z; 0, I), the default prior of `KLRegularizer`.

    ```none
    log p(z) = -0.5 * sum_d z_d^2 - (D / 2) log(2 pi)     D = every latent axis
    ```

    Defined for latents of any shape: `(L,)`, or `(h, w, C)` feature maps
    (known or not until run time).

    Example:

    ```python
    q = keras_vae.KLRegularizer(prior=keras_vae.priors.StandardNormal())(q)
    ```
    """

    def distribution(self, event_shape):
        return standard_normal_distribution(event_shape)
