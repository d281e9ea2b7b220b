"""A VAEModel wired to `keras_vae.models.replica_step` (the prototype of
the integration hook; not a test module).

Until `VAEModel` itself has the two halves of its train step and the
`ReplicaXLAMixin`, the tests and `benchmarks/distributed_xla.py` use this
subclass. It only splits `VAEModel.train_step` / `test_step` where the
compiled part ends, and keeps `jit_compile=True` under a strategy (which
`VAEModel.compile` turns off today).
"""

import keras
import tensorflow as tf

import keras_vae
from keras_vae.models.replica_step import ReplicaXLAMixin
from keras_vae.models.vae_model import VAEModel


@keras.saving.register_keras_serializable(package="keras_vae_tests")
class ReplicaXLAVAE(ReplicaXLAMixin, VAEModel):
    """`VAEModel` whose steps compile per replica under a strategy."""

    def compile(self, *args, jit_compile=True, **kwargs):
        super().compile(*args, jit_compile=jit_compile, **kwargs)
        if jit_compile is True and not self.jit_compile:
            # VAEModel.compile turned XLA off under the strategy; the mixin
            # compiles the replica's part only, which XLA can.
            self.jit_compile = True

    # ------------------------------------------------ the hook's halves
    def compute_gradients(self, data):
        """The replica's compiled part: `(grads, loss, metrics)`."""
        with tf.GradientTape() as tape:
            loss, values = self.compute_objective(data, training=True)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        grads = tape.gradient(scaled, self.trainable_weights)
        return grads, loss, values

    def apply_gradients_and_metrics(self, data, outputs):
        """The uncompiled rest: update (all-reduce, merge_call), metrics."""
        grads, loss, values = outputs
        self._apply_update(grads, self.trainable_weights, loss)
        self._count_nonfinite(loss, values)
        return self._update_metrics(loss, values, self._batch_size(data))

    def compute_test_outputs(self, data):
        return self.compute_objective(data, training=False)

    def update_test_metrics(self, data, outputs):
        loss, values = outputs
        return self._update_metrics(loss, values, self._batch_size(data))

    def train_step(self, data):
        # The same two halves on one device (Keras jits the whole step).
        return self.apply_gradients_and_metrics(
            data, self.compute_gradients(data))


class ExampleNoiseSample(keras_vae.ReparameterizedSample):
    """z = loc + scale * eps with eps a fixed function of the example
    (of its `loc`) and the sample index: the same noise for an example
    whichever replica or device draws it.

    The package's samplers give each replica its own stream (random.py),
    so a run on 2 replicas draws other noise than one device on the same
    global batch; this sampler lets the two runs be compared with noise
    that matters (IWAE's weights depend on eps through log q), not just
    with a collapsed posterior scale. eps is not Gaussian (it lies in
    [-1, 1]); the objectives only need z, loc and scale. It varies slowly
    with loc (a faster function would amplify the float rounding between
    the runs into different noise).
    """

    def draw(self, loc, scale, num_samples=1, seed=None):
        loc, scale = tf.cast(loc, tf.float32), tf.cast(scale, tf.float32)
        k = tf.reshape(tf.range(num_samples, dtype=tf.float32),
                       [-1] + [1] * loc.shape.rank)
        index = tf.cast(tf.range(tf.size(loc[0])), tf.float32)
        eps = tf.sin(5.0 * tf.stop_gradient(loc)[None] + 1.7 * k
                     + 0.37 * tf.reshape(index, tf.shape(loc[0])))
        z = loc[None] + scale[None] * eps
        return tf.reshape(z, tf.concat([[-1], tf.shape(loc)[1:]], 0))
