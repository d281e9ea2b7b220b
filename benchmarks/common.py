"""Pieces every benchmark shares: the machine's name and the keras.io VAE.

The baseline is the keras.io "Variational AutoEncoder" pattern written by
hand (a `Sampling` layer and a `keras.Model` with its own `train_step`, BCE
from logits summed over pixels, analytic KL), the thing a user would write
instead of using keras_vae. The scripts run as `python benchmarks/x.py`, so
this module imports as `common`.
"""

import platform

import keras
import tensorflow as tf


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mlp(x, units):
    for u in units:
        x = keras.layers.Dense(u, activation="relu")(x)
    return x


class Sampling(keras.layers.Layer):
    """keras.io: z = z_mean + exp(z_log_var / 2) * eps."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(
            keras.ops.shape(z_mean), seed=self.seed_generator
        )
        return z_mean + keras.ops.exp(0.5 * z_log_var) * eps


class PlainVAE(keras.Model):
    """keras.io's VAE: encoder/decoder models and a custom train_step."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def call(self, x):
        return self.decoder(self.encoder(x)[2])

    def train_step(self, data):
        x = data
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(x, training=True)
            logits = self.decoder(z, training=True)
            reconstruction = keras.ops.mean(
                keras.ops.sum(
                    keras.ops.binary_crossentropy(x, logits, from_logits=True),
                    axis=-1,
                )
            )
            kl = keras.ops.mean(
                -0.5 * keras.ops.sum(
                    1.0 + z_log_var - keras.ops.square(z_mean)
                    - keras.ops.exp(z_log_var),
                    axis=-1,
                )
            )
            loss = reconstruction + kl
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}


def emit(lines, output=None):
    """Prints the report and, with `output`, writes it to that file too."""
    text = "\n".join(lines)
    print()
    print(text)
    if output:
        with open(output, "w") as f:
            f.write(text + "\n")
        print(f"\nwrote {output}")
