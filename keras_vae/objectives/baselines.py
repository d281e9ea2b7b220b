"""ScoreFunctionBaseline: the control variates of NVIL (Mnih & Gregor 2014).

```none
A = f - c - b(x)                            the advantage used in place of f
c <- α c + (1 - α) mean(f - b(x))           running mean of the signal
v <- α v + (1 - α) mean((f - b(x) - c)²)    running variance (c before the update)
b(x): an MLP on the flattened model inputs, trained on E[(f - c - b(x))²]
```

c and b(x) do not depend on the draw z (c and v are read before this
step's update), so the score-function estimator stays unbiased. One
column per score-function level.

Signal normalisation (`normalize=True`, off by default) divides A by
s = max(1, sqrt(v)), as NVIL does. It rescales the step, it does not
reduce the variance of the gradient's direction, and Adam rescales each
weight's step by its own running RMS anyway. It is only harmless when
the level's whole encoder gradient is divided by s: NVIL's signal holds
the level's -β (log q - log p), but here the level's KL is analytic and
keeps its exact gradient, so dividing only A gives the encoder

```none
∇ E_q[f] / s - β ∇ KL(q || p)  =  (1/s) ∇ (E_q[f] - s β KL)
```

the gradient of an ELBO with β multiplied by s: q is pulled to the
tempered posterior q(z|x) ∝ p(x|z)^(1/s) p(z), flatter than p(z|x), which
keeps the signal's variance high, so s stays high (a self-sustaining
stall). On a 6-component mixture of 64 Bernoullis this left the model
0.8-1.9 nats below EM's held-out log-likelihood after 2,000 Adam steps
(0.6 after 8,000), with q fitting p(x|z)^(1/s) p(z) at s ≈ 3; without the
normalisation, or with the KL's gradient divided by the same s
(`scale`, `keras_vae.objectives.score_function.rescaled_penalty`), the
model reaches EM. So an objective that normalises divides the level's
penalty gradient by `scale(index)` too.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_vae")
class ScoreFunctionBaseline(keras.layers.Layer):
    """Running-average and learned baselines for score-function levels.

    Built by `keras_vae.objectives.ELBO.build` and tracked by the
    `VAEModel` (as `objective_layer`): its weights train with the model's
    optimizer, save and load with it, and are not part of any exported
    signature.

    Args:
        num_levels: score-function levels (one baseline column each).
        learned: include the input-dependent baseline b(x) (NVIL);
            otherwise only the running average c.
        units: hidden units of b(x) (one tanh layer, as in NVIL).
        decay: α of the running averages.
        normalize: divide the advantage by s = max(1, sqrt(v)) (default
            False; see the module doc: the objective must then divide the
            level's KL-penalty gradient by s too, `scale`).
    """

    def __init__(self, num_levels, learned=True, units=100, decay=0.8,
                 normalize=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_levels = int(num_levels)
        self.learned = bool(learned)
        self.units = int(units)
        self.decay = float(decay)
        self.normalize = bool(normalize)
        if self.learned:
            self.hidden = keras.layers.Dense(
                self.units, activation="tanh", dtype="float32", name="hidden"
            )
            self.head = keras.layers.Dense(
                self.num_levels, kernel_initializer="zeros", dtype="float32",
                name="baseline",
            )

    def build(self, input_shapes):
        self.signal_mean = self.add_weight(
            shape=(self.num_levels,), initializer="zeros", trainable=False,
            name="signal_mean", aggregation="mean",
        )
        self.signal_variance = self.add_weight(
            shape=(self.num_levels,), initializer="ones", trainable=False,
            name="signal_variance", aggregation="mean",
        )
        if self.learned:
            size = 0
            for shape in input_shapes:
                dims = tuple(shape)[1:]
                if any(d is None for d in dims):
                    raise ValueError(
                        "The learned baseline b(x) flattens the model "
                        "inputs, which needs their sizes; an input has "
                        f"shape {tuple(shape)}. Use baseline='running'. "
                    )
                n = 1
                for d in dims:
                    n *= int(d)
                size += n
            self.hidden.build((None, size))
            self.head.build((None, self.units))

    def call(self, inputs):
        """b(x): (B, num_levels) from the model inputs (a list)."""
        flat = [
            tf.reshape(tf.cast(x, tf.float32), (tf.shape(x)[0], -1))
            for x in inputs
        ]
        h = flat[0] if len(flat) == 1 else tf.concat(flat, axis=-1)
        return self.head(self.hidden(h))

    def scale(self, index):
        """1 / s for level column `index`: 1 / max(1, sqrt(v)) with
        `normalize`, else 1 (a scalar without gradient). Read it before
        `advantage`, which updates v in training."""
        if not self.normalize:
            return tf.constant(1.0)
        v = tf.convert_to_tensor(self.signal_variance)[index]
        return tf.stop_gradient(1.0 / tf.maximum(1.0, tf.sqrt(v)))

    def advantage(self, signal, index, inputs, training):
        """`(A, baseline_loss)` for level column `index` and the learning
        signal f (K, B) (no gradient): A (K, B) without gradient; the
        squared error of b(x) (0 without the learned baseline), whose
        gradient trains b. Updates c and v when `training`."""
        signal = tf.stop_gradient(tf.cast(signal, tf.float32))
        c = tf.convert_to_tensor(self.signal_mean)[index]
        v = tf.convert_to_tensor(self.signal_variance)[index]
        b = tf.zeros_like(signal[0])
        baseline_loss = tf.constant(0.0)
        if self.learned:
            b = self.call(inputs)[:, index]
            baseline_loss = tf.reduce_mean(
                tf.square(signal - c - b[None, :])
            )
        residual = signal - tf.stop_gradient(b)[None, :]
        advantage = residual - c
        if self.normalize:
            advantage = advantage / tf.maximum(1.0, tf.sqrt(v))
        if training:
            a = self.decay
            one_hot = tf.one_hot(index, self.num_levels)
            new_c = a * c + (1 - a) * tf.reduce_mean(residual)
            new_v = a * v + (1 - a) * tf.reduce_mean(tf.square(residual - c))
            self.signal_mean.assign(
                self.signal_mean + one_hot * (new_c - c)
            )
            self.signal_variance.assign(
                self.signal_variance + one_hot * (new_v - v)
            )
        return tf.stop_gradient(advantage), baseline_loss

    def get_config(self):
        return {
            **super().get_config(),
            "num_levels": self.num_levels,
            "learned": self.learned,
            "units": self.units,
            "decay": self.decay,
            "normalize": self.normalize,
        }
