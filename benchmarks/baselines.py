"""The models the benchmarks compare keras_vae with, and its user's story.

```none
keras.io   the keras.io "Variational AutoEncoder" as published: a `Sampling`
           layer (keras.random noise) and a keras.Model whose train_step has
           a hand-written Bernoulli cross-entropy summed over pixels, an
           analytic KL and three `Mean` trackers                (PlainVAE)
lean       the same stripped to the bone: tf.random.normal noise, no metric
           trackers, returns the loss; with jit_compile=True the leanest
           step a good engineer would write                      (LeanVAE)
VAEModel   the user's story: MLP -> GaussianEncoderHead -> KLRegularizer ->
           ReparameterizedSample -> mirrored MLP -> logits        (mlp_vae)
```

and a hand-written importance-sampling estimator of log p(x) and the ELBO
for a Bernoulli decoder (`bernoulli_is_fn`, `importance_sampled`), written
independently of the package, for models keras_vae does not evaluate and as
the yardstick of `VAEModel.log_likelihood` / `elbo`.
"""

import math

import keras
import numpy as np
import tensorflow as tf

import keras_vae

LEARNING_RATE = 1e-3


def mlp(x, units):
    for u in units:
        x = keras.layers.Dense(u, activation="relu")(x)
    return x


# ------------------------------------------------------------ keras.io, lean
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


class LeanVAE(keras.Model):
    """The leanest step a good engineer would write (see the module doc)."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder

    def call(self, x):
        return self.decoder(self.encoder(x)[0])

    def train_step(self, x):
        with tf.GradientTape() as tape:
            mean, log_var = self.encoder(x, training=True)[:2]
            z = mean + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mean))
            logits = self.decoder(z, training=True)
            rec = tf.reduce_mean(tf.reduce_sum(
                tf.nn.sigmoid_cross_entropy_with_logits(x, logits), -1))
            kl = tf.reduce_mean(-0.5 * tf.reduce_sum(
                1.0 + log_var - tf.square(mean) - tf.exp(log_var), -1))
            loss = rec + kl
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return {"loss": loss}


def hand_written(dim, hidden, latent, seed, lean=False, jit_compile=True,
                 **compile_kwargs):
    """The keras.io VAE (or, `lean`, LeanVAE), compiled with Adam 1e-3.
    Its encoder returns [z_mean, z_log_var(, z)]."""
    x_in = keras.Input((dim,))
    h = mlp(x_in, hidden)
    z_mean = keras.layers.Dense(latent, name="z_mean")(h)
    z_log_var = keras.layers.Dense(latent, name="z_log_var")(h)
    outs = [z_mean, z_log_var]
    if not lean:
        outs.append(Sampling(seed=seed)(outs))
    encoder = keras.Model(x_in, outs, name="encoder")
    z_in = keras.Input((latent,))
    decoder = keras.Model(
        z_in, keras.layers.Dense(dim)(mlp(z_in, hidden[::-1])), name="decoder")
    model = (LeanVAE if lean else PlainVAE)(encoder, decoder)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  **{"jit_compile": jit_compile, **compile_kwargs})
    return model


def hand_written_encode(model):
    """x -> (loc, scale) of a hand-written model's posterior."""
    def encode(x):
        z_mean, z_log_var = model.encoder(x, training=False)[:2]
        return z_mean, tf.exp(0.5 * z_log_var)
    return encode


# ----------------------------------------------------------------- VAEModel
def mlp_vae(dim, hidden, latent, seed, cls=keras_vae.VAEModel, name=None,
            input_name=None, **head_kwargs):
    """The user's story (uncompiled): MLP -> GaussianEncoderHead ->
    KLRegularizer -> ReparameterizedSample -> mirrored MLP -> Dense(dim)."""
    x_in = keras.Input((dim,), name=input_name)
    q = keras_vae.GaussianEncoderHead(latent, **head_kwargs)(mlp(x_in, hidden))
    z = keras_vae.ReparameterizedSample(seed=seed)(keras_vae.KLRegularizer()(q))
    logits = keras.layers.Dense(dim)(mlp(z, hidden[::-1]))
    return cls(x_in, logits, name=name)


def compile_vae(vae, **kwargs):
    kwargs.setdefault("optimizer", keras.optimizers.Adam(LEARNING_RATE))
    vae.compile(loss=keras_vae.losses.BernoulliNLL(), **kwargs)
    return vae


# ---------------------------------------- hand-written importance sampling
def bernoulli_log_prob(x, logits):
    """Σ_d x_d l_d - softplus(l_d) = Σ_d log Bernoulli(x_d; sigmoid(l_d))."""
    return tf.reduce_sum(x * logits - tf.nn.softplus(logits), -1)


def bernoulli_is_fn(encode, decode, k, latent, xla_noise=True):
    """A function (x (B, D), seed (2,)) -> per example, over k draws
    z_k = loc + scale * eps_k (`latent` numbers each):

    ```none
    logsumexp_k log w_k,  log w = log p(x|z) + log N(z; 0, I) - log q(z|x)
    sum_k log p(x|z_k)    (Bernoulli: sum_d x_d l_d - softplus(l_d), l the
                          decoder's logits, broadcast over the K draws)
    KL(q(z|x) || N(0, I)) (analytic)
    ```

    `encode(x)` -> (loc, scale), `decode(z)` -> logits; the rest is one
    XLA function. The noise eps comes from `tf.random.stateless_normal`
    compiled by XLA (`xla_noise`, the numbers of the README's quality and
    head-study rows) or from TensorFlow's own kernel, a different stream:
    on this CPU XLA's took ~170 ms for 320,000 draws, TF's 6 ms, as long as
    the decoder pass they feed, so a speed comparison uses TF's.
    """
    log_2pi = math.log(2.0 * math.pi)

    @tf.function(jit_compile=xla_noise, reduce_retracing=True)
    def noise(b, seed):
        return tf.random.stateless_normal(tf.stack([k, b, latent]), seed)

    @tf.function(jit_compile=True, reduce_retracing=True)
    def scores(x, eps):
        loc, scale = encode(x)
        z = loc + scale * eps                                    # (K, B, L)
        logits = tf.reshape(decode(tf.reshape(z, [-1, latent])),
                            tf.concat([[k], tf.shape(x)], 0))    # (K, B, D)
        log_px_z = bernoulli_log_prob(x, logits)
        log_scale = tf.math.log(scale)
        log_pz = -0.5 * tf.reduce_sum(tf.square(z) + log_2pi, -1)
        log_qz = (-0.5 * tf.reduce_sum(tf.square(eps) + log_2pi, -1)
                  - tf.reduce_sum(log_scale, -1))
        kl = tf.reduce_sum(
            0.5 * (tf.square(loc) + tf.square(scale) - 1.0) - log_scale, -1)
        return (tf.reduce_logsumexp(log_px_z + log_pz - log_qz, 0),
                tf.reduce_sum(log_px_z, 0), kl)

    def fn(x, seed):
        return scores(x, noise(tf.shape(x)[0], seed))

    return fn


def importance_sampled(fn, k, x, num_samples, seed, rows=100):
    """Per-example log p(x) (K = num_samples, rounded to a multiple of the
    `k` draws per call of `fn = bernoulli_is_fn(..., k, latent)`) and ELBO (analytic
    KL, E_q log p(x|z) over the first call's k draws), `rows` examples per
    call. Returns (log_px, elbo, K)."""
    calls = max(1, num_samples // k)
    log_px, elbo = [], []
    for start in range(0, len(x), rows):
        xb = tf.constant(x[start:start + rows])
        lse = []
        for c in range(calls):
            a, s, kl = fn(xb, tf.constant([seed + 1, start * calls + c]))
            lse.append(a)
            if c == 0:
                elbo.append(s / k - kl)
        log_px.append(tf.reduce_logsumexp(tf.stack(lse), 0)
                      - math.log(calls * k))
    return np.concatenate(log_px), np.concatenate(elbo), calls * k
