"""GradientTap: an identity on a latent z whose backward pass an objective
may rescale per sample, after the forward pass.

Some estimators weigh the gradient that reaches the encoder through z
differently from the gradient of the same term that reaches the decoder's
weights. DReG (Tucker et al. 2018) is the case in point:

```none
∇_θ IWAE = Σ_k w̃_k ∇_θ log w_k                       (decoder: unchanged)
∇_φ IWAE ≈ Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ            (encoder: through z only)
```

`run_trace(..., gradient_taps=True)` passes each level's z through a tap.
An objective that sets `tap.scale_gradient(s)` (s of shape (K, B), held
constant) multiplies the gradient flowing back into z_k by s_k, so with
upstream weights w̃_k the path through z carries w̃_k², while the decoder's
weights (not behind the tap) still see w̃_k: one backward pass, no second
decoder call. An unset tap passes gradients through unchanged.
"""

import tensorflow as tf


class GradientTap:
    """Identity on z (K·B rows, sample-major); its gradient is multiplied
    by `scale` once set."""

    def __init__(self):
        self._scale = None

    def scale_gradient(self, scale):
        """Multiplies the gradient into z_k by `scale[k, b]` (shape (K, B);
        treated as a constant). Call it before the gradient is taken."""
        self._scale = tf.stop_gradient(tf.cast(scale, tf.float32))

    def __call__(self, z):
        rank = len(z.shape)

        @tf.custom_gradient
        def tapped(t):
            def grad(dy):
                if self._scale is None:
                    return dy
                s = tf.reshape(self._scale, [-1] + [1] * (rank - 1))
                return dy * tf.cast(s, dy.dtype)

            return tf.identity(t), grad

        return tapped(z)
