"""GumbelSoftmaxHead: features -> logits of N categorical latents."""

import keras

from keras_vae import _validation as v


@keras.saving.register_keras_serializable(package="keras_vae")
class GumbelSoftmaxHead(keras.layers.Layer):
    """Maps encoder features to the logits of q(z | x) = prod_n Cat(z_n; pi_n).

    ```none
    logits = reshape(W flatten(h) + b, (N, C))
    pi_n   = softmax(logits_n)               q(z | x) = prod_n OneHotCategorical(z_n; pi_n)
    ```

    The layer returns the logits tensor, not a distribution; the posterior
    it stands for is `keras_vae.posteriors.categorical_posterior(logits)`
    (batch `(batch,)`, event `(N, C)`). The logits are float32 even under a
    mixed-precision policy, so that the KL and the relaxed sample are
    computed at full precision. Follow it with `GumbelSoftmaxSample`.

    Args:
        num_variables: positive int, N, the number of categorical latents.
        num_classes: int >= 2, C, the number of classes of each latent.
        kernel_initializer, bias_initializer: for the Dense projection.

    Call arguments:
        inputs: features of shape `(batch, ...)`; axes after the batch axis
            are flattened.

    Input shape:
        `(batch, ...)`.

    Output shape:
        `(batch, num_variables, num_classes)`.

    Example:

    ```python
    h = keras.layers.Dense(256, activation="relu")(x)
    logits = keras_vae.GumbelSoftmaxHead(num_variables=20, num_classes=10)(h)
    z = keras_vae.GumbelSoftmaxSample(temperature=0.5)(logits)
    ```

    References: Jang et al., "Categorical Reparameterization with
    Gumbel-Softmax", 2016; Maddison et al., "The Concrete Distribution",
    2016.
    """

    def __init__(
        self,
        num_variables,
        num_classes,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_variables, self.num_classes = _check_sizes(
            num_variables, num_classes
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    @staticmethod
    def params_size(num_variables, num_classes):
        """Number of unconstrained parameters behind one posterior: N * C."""
        num_variables, num_classes = _check_sizes(num_variables, num_classes)
        return num_variables * num_classes

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                "GumbelSoftmaxHead expects features of shape (batch, ...). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        features = 1
        for d in input_shape[1:]:
            if d is None:
                raise ValueError(
                    "GumbelSoftmaxHead needs the non-batch feature axes to "
                    "be known (add pooling or Flatten before it). Received: "
                    f"input_shape={tuple(input_shape)}"
                )
            features *= d
        self.logits_dense = keras.layers.Dense(
            self.params_size(self.num_variables, self.num_classes),
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy, name="logits",
        )
        self.logits_dense.build((input_shape[0], features))

    def call(self, inputs):
        h = inputs
        if len(h.shape) > 2:
            h = keras.ops.reshape(h, (-1, self.logits_dense.kernel.shape[0]))
        logits = keras.ops.cast(self.logits_dense(h), "float32")
        return keras.ops.reshape(
            logits, (-1, self.num_variables, self.num_classes)
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_variables, self.num_classes)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(
            self.compute_output_shape(inputs.shape), dtype="float32"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_variables": self.num_variables,
                "num_classes": self.num_classes,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config


def _check_sizes(num_variables, num_classes):
    """Validated `(N, C)`: N >= 1, C >= 2 (one class is no latent at all)."""
    num_variables = v.check_positive_int("num_variables", num_variables)
    num_classes_int = v.check_positive_int("num_classes", num_classes)
    if num_classes_int < 2:
        raise v.invalid("num_classes", "an integer >= 2", num_classes)
    return num_variables, num_classes_int
