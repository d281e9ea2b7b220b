"""GaussianEncoderHead: features -> Gaussian posterior parameters."""

import keras
import tensorflow_probability as tfp

from keras_vae import _validation as v

tfb = tfp.bijectors

COVARIANCES = ("diag", "full")


@keras.saving.register_keras_serializable(package="keras_vae")
class GaussianEncoderHead(keras.layers.Layer):
    """Maps encoder features to the parameters of q(z | x) = N(loc, Σ).

    ```none
    loc   = W_loc h + b_loc
    diag: scale_d = softplus(W_s h + b_s)_d + min_scale          Σ = diag(scale^2)
    full: scale   = fill_triangular(W_s h + b_s), diagonal as above  Σ = scale scale^T
    ```

    The layer returns tensors, not a distribution: `(loc, scale)` with
    `scale` of shape `(batch, latent_dim)` for `covariance="diag"` or a
    lower-triangular `(batch, latent_dim, latent_dim)` Cholesky factor for
    `covariance="full"`. Both outputs are float32 even under a
    mixed-precision policy, so that the KL and the sample are computed at
    full precision.

    Args:
        latent_dim: positive int, the latent dimensionality L.
        covariance: `"diag"` (default) or `"full"`.
        min_scale: float > 0 added to every standard deviation (the
            diagonal of the Cholesky factor): a floor that keeps the scale
            positive and `log q(z | x)` and the KL finite even where the
            softplus underflows to 0 (pre-activations below about -100).
            Default 1e-4.
        kernel_initializer, bias_initializer: for the two Dense projections.

    Call arguments:
        inputs: features of shape `(batch, ...)`; axes after the batch axis
            are flattened.

    Input shape:
        `(batch, ...)`.

    Output shape:
        `((batch, latent_dim), (batch, latent_dim))` for `"diag"`,
        `((batch, latent_dim), (batch, latent_dim, latent_dim))` for `"full"`.

    Example:

    ```python
    h = keras.layers.Dense(256, activation="relu")(x)
    loc, scale = keras_vae.GaussianEncoderHead(latent_dim=32)(h)
    ```
    """

    def __init__(
        self,
        latent_dim,
        covariance="diag",
        min_scale=1e-4,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.latent_dim = v.check_positive_int("latent_dim", latent_dim)
        self.covariance = v.check_choice("covariance", covariance, COVARIANCES)
        self.min_scale = v.check_float(
            "min_scale", min_scale, minimum=0.0, strict=True
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    @staticmethod
    def params_size(latent_dim, covariance="diag"):
        """Number of unconstrained parameters behind one posterior."""
        latent_dim = v.check_positive_int("latent_dim", latent_dim)
        v.check_choice("covariance", covariance, COVARIANCES)
        if covariance == "diag":
            return 2 * latent_dim
        return latent_dim + latent_dim * (latent_dim + 1) // 2

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                "GaussianEncoderHead expects features of shape (batch, ...). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        features = 1
        for d in input_shape[1:]:
            if d is None:
                raise ValueError(
                    "GaussianEncoderHead needs the non-batch feature axes to "
                    "be known (add pooling or Flatten before it). Received: "
                    f"input_shape={tuple(input_shape)}"
                )
            features *= d
        num_scale = self.params_size(self.latent_dim, self.covariance)
        num_scale -= self.latent_dim
        self.loc_dense = keras.layers.Dense(
            self.latent_dim, kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy, name="loc",
        )
        self.scale_dense = keras.layers.Dense(
            num_scale, kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy, name="scale",
        )
        self.loc_dense.build((input_shape[0], features))
        self.scale_dense.build((input_shape[0], features))
        if self.covariance == "full":
            # The same map as tfb.FillScaleTriL(diag_bijector=Shift(min_scale)
            # o Softplus), kept for `raw_scale_params`. The forward pass below
            # applies the diagonal by a mask instead: FillScaleTriL's
            # tf.linalg.set_diag has a gradient that XLA cannot compile when
            # the batch size is unknown (a last partial batch).
            self._fill_tril = tfb.FillScaleTriL(
                diag_bijector=tfb.Chain(
                    [tfb.Shift(self.min_scale), tfb.Softplus()]
                ),
                diag_shift=None,
            )
            self._eye = keras.ops.eye(self.latent_dim, dtype="float32")

    def call(self, inputs):
        h = inputs
        if len(h.shape) > 2:
            h = keras.ops.reshape(h, (-1, self.loc_dense.kernel.shape[0]))
        loc = keras.ops.cast(self.loc_dense(h), "float32")
        raw = keras.ops.cast(self.scale_dense(h), "float32")
        if self.covariance == "diag":
            scale = keras.ops.softplus(raw) + self.min_scale
        else:
            tril = tfp.math.fill_triangular(raw)
            diag = keras.ops.softplus(tril) + self.min_scale
            scale = tril * (1.0 - self._eye) + diag * self._eye
        return loc, scale

    def raw_scale_params(self, scale):
        """Inverse of the scale map: the `scale` Dense output giving `scale`.

        Useful to start the head at a known posterior (e.g. set the Dense
        bias to `raw_scale_params(target_scale)` and its kernel to zero).
        """
        scale = keras.ops.convert_to_tensor(scale, "float32")
        if self.covariance == "full":
            return self._fill_tril.inverse(scale)
        shifted = scale - self.min_scale
        return shifted + keras.ops.log(-keras.ops.expm1(-shifted))

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        loc = (batch, self.latent_dim)
        if self.covariance == "diag":
            return loc, loc
        return loc, (batch, self.latent_dim, self.latent_dim)

    def compute_output_spec(self, inputs):
        loc, scale = self.compute_output_shape(inputs.shape)
        return (
            keras.KerasTensor(loc, dtype="float32"),
            keras.KerasTensor(scale, dtype="float32"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "latent_dim": self.latent_dim,
                "covariance": self.covariance,
                "min_scale": self.min_scale,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
