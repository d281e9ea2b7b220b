import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.losses import NegativeBinomialNLL
from tests.helpers import run_loss_test

tfd = tfp.distributions


def _softplus(x):
    return np.logaddexp(0.0, x)


def test_negative_binomial_matches_tfp_and_shared_checks():
    rng = np.random.default_rng(0)
    y = rng.poisson(4.0, size=(8, 5)).astype("float32")
    params = rng.normal(size=(8, 10)).astype("float32")
    raw_n, logits = params[:, :5], params[:, 5:]
    dist = tfd.NegativeBinomial(
        total_count=_softplus(raw_n) + 0.01, logits=logits
    )
    expected = -np.mean(np.sum(dist.log_prob(y).numpy(), axis=-1))
    run_loss_test(
        NegativeBinomialNLL, {"min_total_count": 0.01, "validate": False},
        y, params, expected,
    )


def test_mean_and_floor():
    params = np.array([[np.log(np.e - 1.0), -200.0, 0.5, 0.0]], "float32")
    loss = NegativeBinomialNLL(min_total_count=0.1)
    # n = (1 + 0.1, 0 + 0.1); mean = n * exp(logits).
    np.testing.assert_allclose(
        loss.mean(params), [[1.1 * np.exp(0.5), 0.1]], rtol=1e-5
    )
    assert np.isfinite(loss(np.array([[3.0, 0.0]]), params))
    assert NegativeBinomialNLL.params_size((7,)) == 14


def test_validate_rejects_non_counts():
    loss = NegativeBinomialNLL(validate=True)
    assert np.isfinite(loss(np.array([[0.0, 4.0]]), np.zeros((1, 4))))
    for bad in [-2.0, 0.5]:
        with pytest.raises(tf.errors.InvalidArgumentError, match="non-negative integers"):
            loss(np.array([[bad]]), np.zeros((1, 2)))


def test_invalid_min_total_count():
    with pytest.raises(ValueError, match="argument `min_total_count`"):
        NegativeBinomialNLL(min_total_count=0.0)
