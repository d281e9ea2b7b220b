"""GaussianEncoderHead: features -> Gaussian posterior parameters."""

import keras
import tensorflow_probability as tfp

from keras_vae import _validation as v

tfb = tfp.bijectors

COVARIANCES = ("diag", "full")
SCALE_PARAMETERIZATIONS = ("softplus", "log_variance")


@keras.saving.register_keras_serializable(package="keras_vae")
class GaussianEncoderHead(keras.layers.Layer):
    """Maps encoder features to the parameters of q(z | x) = N(loc, Σ).

    ```none
    loc   = W_loc h + b_loc,   r = W_s h + b_s
    scale_parameterization="softplus":      s(r) = softplus(r) + min_scale
    scale_parameterization="log_variance":  s(r) = exp(clip(r, -b, b) / 2) + min_scale,
                                            b = max_abs_log_variance
    diag: scale_d = s(r_d)                                       Σ = diag(scale^2)
    full: scale   = fill_triangular(r), diagonal s(.)            Σ = scale scale^T
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
        flatten: bool. True (default): the axes after the batch axis are
            flattened and projected to a flat latent `(batch, latent_dim)`.
            False: the last axis is projected (a 1x1 convolution on a
            feature map) and every other axis is kept, known or not:
            features `(batch, h, w, F)` give `(loc, scale)` of shape
            `(batch, h, w, latent_dim)`, the latent of a latent-diffusion
            autoencoder. Diagonal covariance only.
        scale_parameterization: how the scale pre-activation r becomes a
            standard deviation: `"log_variance"` (default; r is log σ², the
            keras.io pattern: scale = exp(r / 2), 1 at r = 0) or
            `"softplus"` (scale = softplus(r), 0.69 at r = 0, linear for
            large r; the first release's default). Both keep values and gradients
            finite for any finite r. The default was chosen by measurement
            (`benchmarks/head_study.py`, README): on the digits the
            log-variance head gained 0.09 nats of test log p(x) over
            softplus, matching the hand-written keras.io VAE.
        max_abs_log_variance: float > 0, the clip b of the log-variance
            parameterisation: r is clipped to [-b, b] (σ between e^(-b/2)
            and e^(b/2); beyond the clip the gradient of r is 0). Default
            20 (σ in [4.5e-5, 2.2e4]), so exp never overflows float32 and
            the KL stays finite at pre-activations of ±1e4. Unused by
            `"softplus"`.
        min_scale: float > 0 added to every standard deviation (the
            diagonal of the Cholesky factor): a floor that keeps the scale
            positive and `log q(z | x)` and the KL finite even where the
            softplus underflows to 0 (pre-activations below about -100).
            Default 1e-4.
        kernel_initializer, bias_initializer: for the two Dense projections.

    Call arguments:
        inputs: features of shape `(batch, ...)`; with `flatten=True` the
            axes after the batch axis are flattened.

    Input shape:
        `(batch, ...)`; with `flatten=False`, `(batch, ..., F)` with F known.

    Output shape:
        `((batch, latent_dim), (batch, latent_dim))` for `"diag"`,
        `((batch, latent_dim), (batch, latent_dim, latent_dim))` for `"full"`;
        with `flatten=False`, `(batch, ..., latent_dim)` twice.

    Example:

    ```python
    h = keras.layers.Dense(256, activation="relu")(x)
    loc, scale = keras_vae.GaussianEncoderHead(latent_dim=32)(h)

    # A spatial latent: (B, 16, 16, 128) features -> (B, 16, 16, 4) latent.
    loc, scale = keras_vae.GaussianEncoderHead(4, flatten=False)(feature_map)
    ```
    """

    def __init__(
        self,
        latent_dim,
        covariance="diag",
        flatten=True,
        min_scale=1e-4,
        scale_parameterization="log_variance",
        max_abs_log_variance=20.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.latent_dim = v.check_positive_int("latent_dim", latent_dim)
        self.covariance = v.check_choice("covariance", covariance, COVARIANCES)
        self.flatten = v.check_bool("flatten", flatten)
        self.scale_parameterization = v.check_choice(
            "scale_parameterization", scale_parameterization,
            SCALE_PARAMETERIZATIONS,
        )
        self.max_abs_log_variance = v.check_float(
            "max_abs_log_variance", max_abs_log_variance, minimum=0.0,
            strict=True,
        )
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
        if not self.flatten:
            features = input_shape[-1]
            if features is None:
                raise ValueError(
                    "GaussianEncoderHead(flatten=False) projects the last "
                    "(feature) axis, which must be known. Received: "
                    f"input_shape={tuple(input_shape)}"
                )
            if self.covariance == "full" and len(input_shape) > 2:
                raise ValueError(
                    "GaussianEncoderHead(flatten=False) keeps the axes "
                    f"{tuple(input_shape[1:-1])} of its input, and a full "
                    "covariance over a latent of that shape is not "
                    "supported. Use covariance='diag', or flatten=True for a "
                    "flat latent with full covariance. Received: "
                    f"covariance='full', input_shape={tuple(input_shape)}"
                )
        else:
            features = 1
            for d in input_shape[1:]:
                if d is None:
                    raise ValueError(
                        "GaussianEncoderHead needs the non-batch feature "
                        "axes to be known (add pooling or Flatten before "
                        "it, or use flatten=False to keep them). Received: "
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
                diag_bijector=self._scale_bijector(), diag_shift=None,
            )
            self._eye = keras.ops.eye(self.latent_dim, dtype="float32")

    def _scale_bijector(self):
        """r -> standard deviation, as a TFP bijector (for the inverse)."""
        if self.scale_parameterization == "softplus":
            positive = tfb.Softplus()
        else:
            positive = tfb.Chain([tfb.Exp(), tfb.Scale(0.5)])
        return tfb.Chain([tfb.Shift(self.min_scale), positive])

    def _scale(self, raw):
        """The standard deviation of a pre-activation (see the class doc)."""
        if self.scale_parameterization == "softplus":
            return keras.ops.softplus(raw) + self.min_scale
        b = self.max_abs_log_variance
        return keras.ops.exp(0.5 * keras.ops.clip(raw, -b, b)) + self.min_scale

    def call(self, inputs):
        h = inputs
        if self.flatten and len(h.shape) > 2:
            h = keras.ops.reshape(h, (-1, self.loc_dense.kernel.shape[0]))
        loc = keras.ops.cast(self.loc_dense(h), "float32")
        raw = keras.ops.cast(self.scale_dense(h), "float32")
        if self.covariance == "diag":
            scale = self._scale(raw)
        else:
            tril = tfp.math.fill_triangular(raw)
            diag = self._scale(tril)
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
        return self._scale_bijector().inverse(scale)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        if not self.flatten:
            loc = tuple(input_shape[:-1]) + (self.latent_dim,)
            return loc, loc
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
                "flatten": self.flatten,
                "min_scale": self.min_scale,
                "scale_parameterization": self.scale_parameterization,
                "max_abs_log_variance": self.max_abs_log_variance,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
