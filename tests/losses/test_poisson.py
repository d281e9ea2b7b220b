import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.losses import PoissonNLL
from tests.helpers import run_loss_test

tfd = tfp.distributions


def test_poisson_matches_tfp_and_shared_checks():
    rng = np.random.default_rng(0)
    y = rng.poisson(3.0, size=(8, 5)).astype("float32")
    log_rate = rng.normal(1.0, 0.5, size=(8, 5)).astype("float32")
    expected = -np.mean(np.sum(
        tfd.Poisson(log_rate=log_rate).log_prob(y).numpy(), axis=-1
    ))
    run_loss_test(PoissonNLL, {"validate": False}, y, log_rate, expected)


def test_closed_form_and_mean():
    from math import lgamma

    y = np.array([[0.0, 1.0, 7.0]])
    r = np.array([[0.5, -1.0, 2.0]])
    ref = np.sum(y * r - np.exp(r) - np.vectorize(lgamma)(y + 1.0))
    np.testing.assert_allclose(PoissonNLL().log_prob(y, r), [ref], rtol=1e-5)
    np.testing.assert_allclose(PoissonNLL().mean(r), np.exp(r), rtol=1e-6)


def test_validate_rejects_non_counts():
    loss = PoissonNLL(validate=True)
    assert np.isfinite(loss(np.array([[0.0, 4.0]]), np.zeros((1, 2))))
    for bad in [-1.0, 2.5]:
        with pytest.raises(tf.errors.InvalidArgumentError, match="non-negative integers"):
            loss(np.array([[bad]]), np.array([[0.0]]))
