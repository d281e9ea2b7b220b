"""Helpers of the replica-step tests (not a test module): the name the
tests use for the model (`VAEModel` itself, which has the two halves of its
step and `ReplicaXLAMixin`) and a sampler whose noise is a function of the
example, so runs on one and two replicas draw the same noise."""

import keras
import tensorflow as tf

import keras_vae
from keras_vae.models.replica_step import ReplicaXLAMixin
from keras_vae.models.vae_model import VAEModel


# VAEModel itself now has the two halves of its step and the mixin.
ReplicaXLAVAE = VAEModel


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
