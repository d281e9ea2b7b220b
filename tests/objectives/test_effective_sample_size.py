"""Effective sample size of importance weights, whole and over chunks,
against NumPy; and the low-ESS warning's rule."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

from keras_vae.models import importance
from keras_vae.objectives import (
    chunked_logmeanexp,
    chunked_logmeanexp_and_ess,
    chunked_weighted_mean,
    chunked_weighted_mean_and_ess,
    effective_sample_size,
)


def _kish(log_w):
    w = np.exp(log_w - log_w.max(0))
    return w.sum(0) ** 2 / (w ** 2).sum(0)


def _log_weights(k=97, b=5, seed=0):
    rng = np.random.default_rng(seed)
    # Spreads from nearly equal weights (row 0) to one dominant draw.
    return (rng.normal(size=(k, b)) * np.array([0.01, 0.5, 2, 5, 40])
            ).astype("float64")


def test_effective_sample_size_by_hand():
    log_w = _log_weights()
    ess = effective_sample_size(tf.constant(log_w)).numpy()
    np.testing.assert_allclose(ess, _kish(log_w), rtol=1e-10)
    assert ess[0] > 96.9 and ess[-1] < 1.5
    np.testing.assert_allclose(
        effective_sample_size(tf.constant(log_w.T), axis=1).numpy(), ess)


@pytest.mark.parametrize("chunk", [97, 32, 10, 1])
def test_chunked_ess_matches_the_whole(chunk):
    log_w = _log_weights()
    k = len(log_w)
    values = np.random.default_rng(1).normal(size=(k, 5, 3))

    def log_weights_fn(size, index):
        rows = tf.minimum(index * size + tf.range(size), k - 1)
        return tf.gather(tf.constant(log_w), rows)

    def pair_fn(size, index):
        rows = tf.minimum(index * size + tf.range(size), k - 1)
        return (tf.gather(tf.constant(log_w), rows),
                tf.gather(tf.constant(values), rows))

    lme, ess = chunked_logmeanexp_and_ess(log_weights_fn, k, chunk)
    np.testing.assert_allclose(ess.numpy(), _kish(log_w), rtol=1e-9)
    np.testing.assert_allclose(
        lme.numpy(), chunked_logmeanexp(log_weights_fn, k, chunk).numpy())
    mean, ess2 = chunked_weighted_mean_and_ess(pair_fn, k, chunk)
    np.testing.assert_allclose(ess2.numpy(), _kish(log_w), rtol=1e-9)
    w = np.exp(log_w - log_w.max(0))
    w /= w.sum(0)
    np.testing.assert_allclose(mean.numpy(),
                               (w[..., None] * values).sum(0), rtol=1e-9)
    np.testing.assert_allclose(
        chunked_weighted_mean(pair_fn, k, chunk).numpy(), mean.numpy())


def test_warning_rule():
    k = 1000
    good = np.full(50, 400.0)
    bad = np.concatenate([np.full(40, 400.0), np.full(10, 3.0)])  # 20 % low
    assert importance.ess_message(good, k, "log_likelihood") is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert importance.warn_if_low_ess(bad, k, "log_likelihood")
        assert not importance.warn_if_low_ess(good, k, "log_likelihood")
    assert len(caught) == 1
    assert issubclass(caught[0].category,
                      importance.LowEffectiveSampleSizeWarning)
    text = str(caught[0].message)
    assert "refine_steps" in text and "10 of 50" in text
    # The threshold: 5 % of K (none below K = 20: the ESS is at least 1).
    assert importance.low_ess([49.0, 51.0], 1000).tolist() == [True, False]
    assert importance.low_ess([1.0, 1.0], 10).tolist() == [False, False]
