"""What `discrete_estimators.py` measures its models with: exact values by
enumerating a categorical latent, and repeated draws of an encoder gradient.

- `exact(vae, x)`: log p(x) and the ELBO of a VAE with one categorical
  latent of C classes and a uniform prior, by summing over the C codes
  (log q(c | x) from the encoder's logits, log p(x | c) from the decoder on
  each one-hot code, the Bernoulli written out).
- `exact_gradient(vae, x)`: the encoder gradient of -mean ELBO by that sum.
- `estimator(vae, jit)`, `draws(fn, x, r)`, `snr(vae, rows, r, jit)`:
  R draws of the compiled objective's encoder gradient, and the signal to
  noise ratio of Rainforth et al. (2018).
"""

import numpy as np
import tensorflow as tf

from baselines import bernoulli_log_prob


def exact(vae, x):
    """(log p(x), ELBO) per example, summed over the latent's C classes."""
    logits = vae.encoder(x)
    logits = logits[0] if isinstance(logits, (list, tuple)) else logits
    classes = logits.shape[-1]
    log_q = tf.nn.log_softmax(logits[:, 0, :], -1)
    log_joint = tf.stack([bernoulli_log_prob(x, vae.decoder([tf.one_hot(
        tf.fill([len(x), 1], c), classes)])) - np.log(classes)
        for c in range(classes)], -1)
    return (tf.reduce_logsumexp(log_joint, -1),
            tf.reduce_sum(tf.exp(log_q) * (log_joint - log_q), -1))


def flat(grads):
    return tf.concat([tf.reshape(g, [-1]) for g in grads], 0)


def exact_gradient(vae, x):
    """∇_encoder of -mean ELBO(x), by enumeration."""
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(exact(vae, x)[1])
    return flat(tape.gradient(loss, vae.encoder.trainable_weights)).numpy()


def estimator(vae, jit):
    """x -> one draw of the compiled objective's encoder gradient, flat."""
    weights = vae.encoder.trainable_weights

    def one(x):
        with tf.GradientTape() as tape:
            loss, _ = vae.compute_objective(x, training=True)
        return flat(tape.gradient(loss, weights))

    return tf.function(one, jit_compile=True) if jit else one  # quick: eager


def draws(fn, x, r):
    x = tf.constant(x)
    return np.stack([fn(x).numpy() for _ in range(r)])


def snr(vae, rows, r, jit):
    """Mean over `rows` (one example each) of the mean over the encoder
    weights the example reaches (sd > 0) of |mean g| / sd g, R = r draws."""
    fn, values = estimator(vae, jit), []
    for row in rows:
        g = draws(fn, row[None], r)
        sd = g.std(0, ddof=1)
        values.append(np.mean(np.abs(g.mean(0))[sd > 0] / sd[sd > 0]))
    return float(np.mean(values))
