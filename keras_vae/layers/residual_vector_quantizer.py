"""ResidualVectorQuantizer: a stack of VectorQuantizers on residuals."""

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.layers import _codebook as cb
from keras_vae.layers.vector_quantizer import VectorQuantizer


@keras.saving.register_keras_serializable(package="keras_vae")
class ResidualVectorQuantizer(cb.SameShapeOutput, keras.layers.Layer):
    """Quantises features by Q codebooks in turn, each on what is left.

    ```none
    r_1 = z
    k_q = argmin_k ||r_q - e^(q)_k||^2,   r_(q+1) = r_q - e^(q)_(k_q)  (q = 1..Q)
    output = sum_q e^(q)_(k_q) + (z - stop_gradient(z))   (straight-through)
    losses: each stage's VectorQuantizer losses on its residual r_q
    ```

    Each stage is a `VectorQuantizer` (sublayers `quantizers[q]`, named
    `quantizer_q`) with the same arguments; stage q's commitment loss pulls
    r_q, which depends on z only (earlier stages' codes enter it with a
    stopped gradient), towards its code. With Q codebooks of K codes a
    position has K^Q possible values for Q K stored vectors (Zeghidour et
    al.). Stage q's seed is `seed + q`.

    The codes of a position are the Q stage indices, last axis:
    `codes()` gives `(batch, ..., Q)` and `lookup()` sums the stage vectors.
    `num_codes` is K (per stage); `log_num_codes` is Q log K, the uniform
    prior's -log p(codes) per position. `usage_metrics()` returns the mean
    over the stages of `perplexity` and `codebook_usage`, and each stage's
    value as `perplexity_q` / `codebook_usage_q`.

    Args:
        num_quantizers: positive integer, the number of stages Q.
        num_codes: integer >= 2, the codebook size K of every stage.
        commitment_cost, ema_decay, epsilon, kmeans_init: as for
            `VectorQuantizer`, for every stage.
        kmeans_iters, restart_after_steps, usage_window: as for
            `VectorQuantizer`, for every stage.
        codebook_initializer: as for `VectorQuantizer`; each stage gets
            its own copy (a seeded initializer gives every stage the same
            initial codebook).
        seed: int or None; stage q uses `seed + q`.

    Call arguments:
        inputs: features `(batch, ..., D)`.
        training: Python bool; losses and codebook updates only when true.

    Input shape:
        `(batch, ..., D)`.

    Output shape:
        `(batch, ..., D)`, float32.

    Example:

    ```python
    h = keras.layers.Dense(16)(x)
    z_q = keras_vae.ResidualVectorQuantizer(num_quantizers=4, num_codes=256)(h)
    ```

    References: Zeghidour et al., "SoundStream: An End-to-End Neural Audio
    Codec", 2021; van den Oord et al. 2017; Razavi et al. 2019.
    """

    def __init__(self, num_quantizers, num_codes, commitment_cost=0.25,
                 ema_decay=0.99, epsilon=1e-5, kmeans_init=False,
                 kmeans_iters=10, restart_after_steps=100, usage_window=100,
                 codebook_initializer=None, seed=None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.num_quantizers = v.check_positive_int(
            "num_quantizers", num_quantizers)
        self.seed = v.check_seed("seed", seed)
        stage_kwargs = dict(
            num_codes=num_codes, commitment_cost=commitment_cost,
            ema_decay=ema_decay, epsilon=epsilon, kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            restart_after_steps=restart_after_steps,
            usage_window=usage_window,
        )
        self.quantizers = []
        for q in range(self.num_quantizers):
            init = codebook_initializer
            if init is not None:  # one initializer object per stage
                init = keras.initializers.deserialize(
                    keras.initializers.serialize(
                        keras.initializers.get(init)))
            self.quantizers.append(VectorQuantizer(
                **stage_kwargs, codebook_initializer=init,
                seed=None if seed is None else seed + q,
                dtype=self.dtype_policy, name=f"quantizer_{q}"))
        first = self.quantizers[0]
        self.num_codes = first.num_codes
        self.commitment_cost = first.commitment_cost
        self.ema_decay = first.ema_decay
        self.epsilon = first.epsilon
        self.kmeans_init = first.kmeans_init
        self.kmeans_iters = first.kmeans_iters
        self.restart_after_steps = first.restart_after_steps
        self.usage_window = first.usage_window
        self.codebook_initializer = first.codebook_initializer

    def build(self, input_shape):
        cb.check_feature_axis(input_shape, None, self.name)
        for quantizer in self.quantizers:
            quantizer.build(tuple(input_shape))

    @property
    def code_dim(self):
        return self.quantizers[0].code_dim

    @property
    def log_num_codes(self):
        """Q log K: the uniform prior's -log p(codes) per position."""
        return self.num_quantizers * self.quantizers[0].log_num_codes

    def codes(self, inputs):
        """The stage codes of each position: int32 `(batch, ..., Q)`."""
        residual = tf.cast(inputs, cb.float_dtype(self))
        codes = []
        for quantizer in self.quantizers:
            k = quantizer.codes(residual)
            codes.append(k)
            residual = residual - quantizer.lookup(k)
        return tf.stack(codes, axis=-1)

    def lookup(self, codes):
        """Sum of the stage vectors of `codes` `(batch, ..., Q)`."""
        codes = tf.convert_to_tensor(codes)
        if codes.shape.rank is None or codes.shape[-1] != self.num_quantizers:
            raise v.invalid(
                "codes", f"integer codes of shape (batch, ..., "
                f"{self.num_quantizers}) (one per stage)",
                f"<codes of shape {tuple(codes.shape)}>")
        # Summed in the order of `call`, so lookup(codes(x)) is bit-equal
        # to the layer's output.
        total = None
        for q, quantizer in enumerate(self.quantizers):
            vector = quantizer.lookup(codes[..., q])
            total = vector if total is None else total + vector
        return total

    def usage_metrics(self, codes=None):
        """Mean over stages of each stage's `usage_metrics` (see
        `VectorQuantizer.usage_metrics`), plus `perplexity_q` and
        `codebook_usage_q` per stage q. `codes`, if given, is
        `(batch, ..., Q)`."""
        out = {}
        for q, quantizer in enumerate(self.quantizers):
            stage = quantizer.usage_metrics(
                None if codes is None else codes[..., q])
            for key, value in stage.items():
                out[f"{key}_{q}"] = value
        for key in ("perplexity", "codebook_usage"):
            out[key] = tf.add_n(
                [out[f"{key}_{q}"] for q in range(self.num_quantizers)]
            ) / float(self.num_quantizers)
        return out

    def call(self, inputs, training=None):
        outputs, losses = self.quantize_with_losses(inputs, training=training)
        for loss in losses:
            self.add_loss(loss)
        return outputs

    def quantize_with_losses(self, inputs, training=False):
        """`(outputs, losses)`: what `call` returns and the stages' losses
        (see `VectorQuantizer.quantize_with_losses`), without `add_loss`."""
        z = tf.cast(inputs, cb.float_dtype(self))
        residual = z
        total, losses = None, []
        for quantizer in self.quantizers:
            code, stage_losses = quantizer.quantize_with_losses(
                residual, training)
            code = tf.stop_gradient(code)
            losses += stage_losses
            total = code if total is None else total + code
            residual = residual - code
        return total + (z - tf.stop_gradient(z)), losses

    def _feature_size(self):
        return self.code_dim

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_quantizers": self.num_quantizers,
            "num_codes": self.num_codes,
            "commitment_cost": self.commitment_cost,
            "ema_decay": self.ema_decay,
            "epsilon": self.epsilon,
            "kmeans_init": self.kmeans_init,
            "kmeans_iters": self.kmeans_iters,
            "restart_after_steps": self.restart_after_steps,
            "usage_window": self.usage_window,
            "codebook_initializer": None if self.codebook_initializer is None
            else keras.initializers.serialize(self.codebook_initializer),
            "seed": self.seed,
        })
        return config
