"""Categorical likelihood over discrete intensity levels (e.g. 256)."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import _validation
from keras_vae.losses import _utils
from keras_vae.losses.base import LikelihoodLoss

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="keras_vae")
class CategoricalNLL(LikelihoodLoss):
    """Negative log-likelihood of independent categorical intensity levels.

    Each data element is an integer level in `{0, ..., K - 1}`
    (`K = num_classes`, e.g. 8-bit pixels with `K = 256`), stored as ints or
    as whole-number floats, with its own softmax over the `K` levels:

    ```none
    log p(x | l) = sum_d [ l_{d, x_d} - logsumexp_k l_{d, k} ]
    mean(x_d | l) = sum_k k * softmax(l_d)_k
    ```

    For data of shape `(B, ..., C)` the decoder emits `(B, ..., K * C)`
    logits, read as `(B, ..., C, K)`: the `K` logits of one element are
    contiguous (channel-major). `mean` returns the expected level (a float,
    same shape as the data), not the most probable one.

    Args:
        num_classes: number of levels `K` (an integer >= 2).
        validate: check that `y_true` holds integers in `{0, ..., K - 1}`
            (see `LikelihoodLoss`).
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:

    ```python
    # 28x28 grey images with values 0..255.
    logits = keras.layers.Conv2D(CategoricalNLL.params_size((1,)), 3,
                                 padding="same")(h)
    model.compile(loss=keras_vae.losses.CategoricalNLL(num_classes=256))
    ```

    References: van den Oord et al., "Pixel recurrent neural networks",
    ICML 2016 (256-way softmax over pixel values).
    """

    PARAMS_PER_ELEMENT = 256  # the default; `params_per_element` = num_classes

    def __init__(self, num_classes=256, validate=False,
                 reduction="sum_over_batch_size", name="categorical_nll",
                 dtype=None):
        super().__init__(validate=validate, reduction=reduction, name=name,
                         dtype=dtype)
        num_classes = _validation.check_positive_int(
            "num_classes", num_classes
        )
        if num_classes < 2:
            raise _validation.invalid(
                "num_classes", "an integer >= 2", num_classes
            )
        self.num_classes = num_classes

    @property
    def params_per_element(self):
        return self.num_classes

    @_utils.class_or_instance_method
    def params_size(owner, event_shape, num_classes=None):
        """Number of parameters the decoder must emit for one example.

        Args:
            event_shape: shape of one data example (without batch axis), or
                of one position's channels, e.g. `(784,)` or `(3,)`.
            num_classes: number of levels; defaults to 256 on the class, and
                to the loss's own `num_classes` when called on an instance.
        """
        if num_classes is None:
            num_classes = (
                owner.num_classes if isinstance(owner, CategoricalNLL)
                else owner.PARAMS_PER_ELEMENT
            )
        return num_classes * _utils.num_elements(event_shape)

    def _make_distribution(self, params):
        logits = _utils.split_components(params, self.num_classes)
        return tfd.Categorical(logits=logits)

    def _prepare_y_true(self, y_true):
        # Categorical casts to int by truncation; round first so that a level
        # stored as e.g. 254.99998 scores as 255.
        return tf.round(y_true)

    def mean(self, params):
        """Expected level `sum_k k p_k`, float32, the data's shape."""
        params = tf.cast(tf.convert_to_tensor(params), tf.float32)
        probs = tf.nn.softmax(
            _utils.split_components(params, self.num_classes), axis=-1
        )
        levels = tf.range(self.num_classes, dtype=tf.float32)
        return tf.reduce_sum(probs * levels, axis=-1)

    def _support_checks(self, y_true):
        return [(
            tf.reduce_all(
                (y_true >= 0.0)
                & (y_true <= self.num_classes - 1)
                & (tf.round(y_true) == y_true)
            ),
            f"integers in {{0, ..., {self.num_classes - 1}}}",
        )]

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config
