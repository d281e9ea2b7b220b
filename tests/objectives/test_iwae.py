import numpy as np
import pytest
import tensorflow as tf

from keras_vae import objectives


def test_iwae_is_log_mean_exp_of_weights():
    rng = np.random.default_rng(0)
    log_w = rng.normal(scale=3.0, size=(7, 4)).astype("float32")
    got = objectives.iwae(tf.constant(log_w)).numpy()
    want = np.log(np.mean(np.exp(log_w.astype("float64")), axis=0))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_iwae_does_not_overflow():
    log_w = tf.constant([[1000.0, -1000.0], [1000.0, -1000.0]])
    np.testing.assert_allclose(objectives.iwae(log_w), [1000.0, -1000.0])


@pytest.mark.parametrize("chunk", [1, 3, 4, 10, 64])
def test_chunks_combine_to_the_whole(chunk):
    # Chunks of 3 of K = 10: three full chunks in the while loop and a
    # remainder of 1; the reference is numpy's log-mean-exp in float64.
    rng = np.random.default_rng(1)
    log_w = rng.normal(scale=4.0, size=(10, 3))
    seen = []

    def fn(k, index):
        seen.append(k)
        start = index * chunk
        return tf.constant(log_w.astype("float32"))[start:start + k]

    got = tf.function(lambda: objectives.chunked_logmeanexp(fn, 10, chunk))()
    want = np.log(np.mean(np.exp(log_w), axis=0))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    mean = tf.function(lambda: objectives.chunked_mean(fn, 10, chunk))()
    np.testing.assert_allclose(mean, log_w.mean(0), rtol=1e-5, atol=1e-6)


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
