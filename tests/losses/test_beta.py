import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.losses import BetaNLL
from tests.helpers import run_loss_test

tfd = tfp.distributions


def _softplus(x):
    return np.logaddexp(0.0, x)


def test_beta_matches_tfp_and_shared_checks():
    rng = np.random.default_rng(0)
    y = rng.uniform(0.05, 0.95, size=(8, 5)).astype("float32")
    params = rng.normal(size=(8, 10)).astype("float32")
    dist = tfd.Beta(
        concentration1=_softplus(params[:, :5]) + 1e-3,
        concentration0=_softplus(params[:, 5:]) + 1e-3,
    )
    expected = -np.mean(np.sum(dist.log_prob(y).numpy(), axis=-1))
    run_loss_test(
        BetaNLL,
        {"min_concentration": 1e-3, "epsilon": 1e-6, "validate": False},
        y, params, expected,
    )


def test_edges_are_clipped_to_epsilon():
    params = np.array([[0.3, -0.2, 1.0, 0.4]], "float32")
    y = np.array([[0.0, 1.0]], "float32")
    loss = BetaNLL(epsilon=1e-3)
    a = _softplus(params[:, :2]) + 1e-3
    b = _softplus(params[:, 2:]) + 1e-3
    ref = tfd.Beta(a, b).log_prob(np.array([[1e-3, 1 - 1e-3]], "float32"))
    lp = loss.log_prob(y, params)
    assert np.all(np.isfinite(lp))
    np.testing.assert_allclose(lp, ref.numpy().sum(-1), rtol=1e-5)
    np.testing.assert_allclose(loss.mean(params), a / (a + b), rtol=1e-5)


def test_log_prob_compiles_under_xla():
    rng = np.random.default_rng(1)
    y = tf.constant(rng.uniform(size=(4, 3)).astype("float32"))
    params = tf.constant(rng.normal(size=(4, 6)).astype("float32"))
    loss = BetaNLL()
    value = tf.function(loss.log_prob, jit_compile=True)(y, params)
    np.testing.assert_allclose(
        value, loss.log_prob(y, params), rtol=1e-5, atol=1e-5
    )


def test_validate_rejects_outside_support():
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"in \[0, 1\]"):
        BetaNLL(validate=True)(np.array([[1.5]]), np.zeros((1, 2)))


def test_invalid_arguments():
    for kwargs in [{"epsilon": 0.5}, {"epsilon": -1e-3}, {"epsilon": True},
                   {"min_concentration": 0.0}]:
        (name,) = kwargs
        with pytest.raises(ValueError, match=f"argument `{name}`"):
            BetaNLL(**kwargs)
