"""Shared by the estimator tests: tiny models, exact gradients by
enumeration, and many-draw gradient statistics.

The exact quantities are written here from the definitions (log-softmax,
Bernoulli log-likelihood by hand, sums over every value of the latent),
independently of `keras_vae.objectives` and of TFP.
"""

import itertools

import keras
import numpy as np
import tensorflow as tf

import keras_vae

D = 6  # data dimension


def data(n_distinct=4, repeat=64, seed=0):
    """`n_distinct` binary rows, each repeated `repeat` times: one call
    of the estimator averages `repeat` independent draws per row."""
    rng = np.random.default_rng(seed)
    rows = (rng.random((n_distinct, D)) < 0.5).astype("float32")
    return np.repeat(rows, repeat, axis=0), rows


def categorical_vae(classes=3, seed=0):
    """x (6) -> Dense(8, tanh) -> logits (1, C) -> one-hot z -> Dense(6)."""
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((D,))
    h = keras.layers.Dense(8, activation="tanh")(x_in)
    logits = keras_vae.GumbelSoftmaxHead(1, classes)(h)
    logits = keras_vae.KLRegularizer()(logits)
    z = keras_vae.CategoricalSample(seed=seed + 1)(logits)
    out = keras.layers.Dense(D, bias_initializer="random_normal")(
        keras.layers.Flatten()(z)
    )
    return keras_vae.VAEModel(x_in, out)


def gaussian_vae(latent=2, seed=0):
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((D,))
    h = keras.layers.Dense(8, activation="tanh")(x_in)
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(latent)(h))
    z = keras_vae.ReparameterizedSample(seed=seed + 1)(q)
    out = keras.layers.Dense(D)(keras.layers.Dense(8, activation="tanh")(z))
    return keras_vae.VAEModel(x_in, out)


def model_weights(vae):
    """Encoder and decoder weights (not the objective's baseline), and
    "both": the encoder's then the decoder's (one compiled estimator
    checks every weight of the model)."""
    encoder = list(vae.encoder.trainable_weights)
    decoder = list(vae.decoder.trainable_weights)
    return {"encoder": encoder, "decoder": decoder, "both": encoder + decoder}


def split_parts(vae, flat):
    """A flat "both" gradient as {"encoder": ..., "decoder": ...}."""
    n = sum(int(np.prod(w.shape)) for w in vae.encoder.trainable_weights)
    return {"encoder": flat[..., :n], "decoder": flat[..., n:]}


def _flat(grads):
    return tf.concat([tf.reshape(g, [-1]) for g in grads], 0)


def estimator(vae, x, part):
    """A compiled function: one draw of the estimator's gradient of the
    compiled objective's loss w.r.t. the `part` weights, flattened."""
    weights = model_weights(vae)[part]

    @tf.function(jit_compile=True)
    def grad():
        with tf.GradientTape() as tape:
            loss, _ = vae.compute_objective(x, training=True)
        return _flat(tape.gradient(loss, weights))

    return grad


def draws(fn, repeats):
    return np.stack([fn().numpy() for _ in range(repeats)])


NOISE_STATE = (12345, 0)


def draws_from(vae, fn, repeats):
    """`draws` from a fixed point of every sampler's noise stream, so that
    estimators compared on one model see the same draws."""
    for level in vae.levels:
        level.sampler.seed_generator.state.assign(NOISE_STATE)
    return draws(fn, repeats)


def bernoulli_log_prob(x, logits):
    """Σ_d x log σ(l) + (1 - x) log σ(-l), by hand."""
    return tf.reduce_sum(
        x * tf.math.log_sigmoid(logits)
        + (1 - x) * tf.math.log_sigmoid(-logits), -1
    )


def class_terms(vae, rows, classes):
    """log q(c | x) and log p(x | c) + log p(c), each (n, C)."""
    logits = vae.encoder(rows)
    logits = logits[0] if isinstance(logits, (list, tuple)) else logits
    log_q = tf.nn.log_softmax(logits[:, 0, :], -1)
    log_joint = []
    for c in range(classes):
        z = tf.one_hot(tf.fill([rows.shape[0], 1], c), classes)
        log_joint.append(
            bernoulli_log_prob(rows, vae.decoder([z]))
            - np.log(classes)
        )
    return log_q, tf.stack(log_joint, -1)


def exact_elbo_gradient(vae, rows, classes, part):
    """∇ of -mean_rows ELBO(x) = -Σ_c q(c|x) [log p(x, c) - log q(c|x)]."""
    weights = model_weights(vae)[part]
    with tf.GradientTape() as tape:
        log_q, log_joint = class_terms(vae, rows, classes)
        elbo = tf.reduce_sum(tf.exp(log_q) * (log_joint - log_q), -1)
        loss = -tf.reduce_mean(elbo)
    return _flat(tape.gradient(loss, weights)).numpy()


def exact_iwae_gradient(vae, rows, classes, k, part):
    """∇ of -mean_rows E[IWAE_K]: the expectation over every K-tuple of
    classes, weighted by its probability Π_k q(c_k | x)."""
    weights = model_weights(vae)[part]
    with tf.GradientTape() as tape:
        log_q, log_joint = class_terms(vae, rows, classes)
        log_w = log_joint - log_q
        total = 0.0
        for t in itertools.product(range(classes), repeat=k):
            t = list(t)
            prob = tf.exp(tf.reduce_sum(tf.gather(log_q, t, axis=1), 1))
            bound = tf.reduce_logsumexp(tf.gather(log_w, t, axis=1), 1)
            total = total + prob * (bound - np.log(k))
        loss = -tf.reduce_mean(total)
    return _flat(tape.gradient(loss, weights)).numpy()


def exact_log_likelihood(vae, rows, classes):
    """log p(x) = logsumexp_c log p(x, c), per row."""
    _, log_joint = class_terms(vae, rows, classes)
    return tf.reduce_logsumexp(log_joint, -1).numpy()


def log_likelihood_standard_error(vae, rows, classes, k):
    """Standard error of the K-sample importance-sampled log p(x) (delta
    method), from the exact relative variance of the weights under q:
    Σ_c p(x, c)² / q(c | x) / p(x)² - 1."""
    log_q, log_joint = (t.numpy() for t in class_terms(vae, rows, classes))
    log_px = np.logaddexp.reduce(log_joint, axis=1)
    rel_var = np.exp(2 * log_joint - log_q - 2 * log_px[:, None]).sum(1) - 1
    return np.sqrt(rel_var / k)


def assert_unbiased(samples, exact, sigmas=4.0, floor=1e-5):
    """Each coordinate's mean over the draws within `sigmas` standard
    errors of `exact` (plus a tiny floor for exact-zero coordinates)."""
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(len(samples))
    bad = np.abs(mean - exact) > sigmas * se + floor
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} coordinates off: mean {mean[bad]}, "
        f"exact {exact[bad]}, se {se[bad]}"
    )
    return mean, se
