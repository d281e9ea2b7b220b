import numpy as np
import pytest
import tensorflow as tf

from keras_vae import objectives
from keras_vae.objectives.logmeanexp import chunk_plan


def test_iwae_is_log_mean_exp_of_weights():
    rng = np.random.default_rng(0)
    log_w = rng.normal(scale=3.0, size=(7, 4)).astype("float32")
    got = objectives.iwae(tf.constant(log_w)).numpy()
    want = np.log(np.mean(np.exp(log_w.astype("float64")), axis=0))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_iwae_does_not_overflow():
    log_w = tf.constant([[1000.0, -1000.0], [1000.0, -1000.0]])
    np.testing.assert_allclose(objectives.iwae(log_w), [1000.0, -1000.0])


@pytest.mark.parametrize("chunk, plan", [
    (1, (10, 1)), (3, (4, 3)), (4, (3, 4)), (6, (2, 5)), (10, (1, 10)),
    (64, (1, 10)),
])
def test_chunks_combine_to_the_whole(chunk, plan):
    # K = 10 in chunks of at most 3: four chunks of 3, the last two
    # samples of the fourth dropped (their huge values would dominate
    # either reduction if they were not). The reference is numpy's
    # log-mean-exp in float64.
    assert chunk_plan(10, chunk) == plan
    rng = np.random.default_rng(1)
    log_w = rng.normal(scale=4.0, size=(10, 3))
    padded = np.concatenate([log_w, np.full((64, 3), 1e4)]).astype("float32")
    traced = []

    def fn(k, index):
        traced.append(k)
        return tf.constant(padded)[index * k:index * k + k]

    got = tf.function(lambda: objectives.chunked_logmeanexp(fn, 10, chunk))()
    want = np.log(np.mean(np.exp(log_w), axis=0))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert traced == [plan[1]]  # one trace, whatever the remainder
    mean = tf.function(lambda: objectives.chunked_mean(fn, 10, chunk))()
    np.testing.assert_allclose(mean, log_w.mean(0), rtol=1e-5, atol=1e-6)


def test_weighted_mean_and_argmax_drop_the_excess_samples():
    # K = 5 in chunks of at most 2: three chunks of 2, the sixth sample
    # (weight e^100, value 1e3) dropped. Reference: self-normalised
    # weights in float64, and the argmax by hand.
    rng = np.random.default_rng(2)
    log_w = rng.normal(size=(5, 4))
    values = rng.normal(size=(5, 4, 3))
    pw = np.concatenate([log_w, np.full((1, 4), 100.0)]).astype("float32")
    pv = np.concatenate([values, np.full((1, 4, 3), 1e3)]).astype("float32")

    def fn(k, index):
        rows = slice(index * k, index * k + k)
        return tf.constant(pw)[rows], tf.constant(pv)[rows]

    got = tf.function(
        lambda: objectives.chunked_weighted_mean(fn, 5, 2))().numpy()
    w = np.exp(log_w - log_w.max(0))
    w /= w.sum(0)
    np.testing.assert_allclose(got, np.einsum("kb,kbd->bd", w, values),
                               rtol=1e-5, atol=1e-6)
    best = tf.function(lambda: objectives.chunked_argmax(fn, 5, 2))().numpy()
    np.testing.assert_allclose(
        best, values[log_w.argmax(0), np.arange(4)], rtol=1e-6)


def test_elbo_is_mean_reconstruction_minus_kl():
    log_px = tf.constant([[-1.0, -4.0], [-3.0, -2.0]])
    kl = tf.constant([0.5, 1.0])
    np.testing.assert_allclose(objectives.elbo(log_px, kl), [-2.5, -4.0])


def test_iwae_increases_with_k_in_expectation():
    # Weights of a lognormal importance sampler: E[IWAE_K] rises with K
    # towards log E[w] = mu + s^2 / 2 (Burda et al. 2015, Theorem 1).
    rng = np.random.default_rng(2)
    mu, s = 0.0, 1.5
    means = []
    for k in (1, 5, 50):
        log_w = rng.normal(mu, s, size=(k, 20000)).astype("float32")
        means.append(float(np.mean(objectives.iwae(log_w))))
    assert means[0] < means[1] < means[2] < mu + s**2 / 2
    np.testing.assert_allclose(means[0], mu, atol=0.05)
