import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.losses import ContinuousBernoulliNLL
from tests.helpers import run_loss_test

tfd = tfp.distributions


def test_continuous_bernoulli_matches_tfp_and_shared_checks():
    rng = np.random.default_rng(0)
    y = rng.uniform(size=(8, 6)).astype("float32")
    y[0, :2] = [0.0, 1.0]
    logits = rng.normal(size=(8, 6)).astype("float32")
    expected = -np.mean(np.sum(
        tfd.ContinuousBernoulli(logits=logits).log_prob(y).numpy(), axis=-1
    ))
    run_loss_test(ContinuousBernoulliNLL, {"validate": False}, y, logits,
                  expected)


def test_closed_form_away_from_zero():
    # log C(l) = log(l / tanh(l / 2)), in float64.
    y = np.array([[0.0, 0.3, 1.0]])
    logits = np.array([[2.0, -1.5, 0.7]])
    ref = np.sum(
        y * logits - np.logaddexp(0.0, logits)
        + np.log(logits / np.tanh(logits / 2))
    )
    lp = ContinuousBernoulliNLL().log_prob(y, logits).numpy()
    np.testing.assert_allclose(lp, [ref], rtol=1e-5)


def test_stable_for_logits_near_zero():
    y = np.array([[0.0, 0.25, 0.5, 1.0]] * 3, "float32")
    logits = np.array([[0.0], [1e-4], [-1e-4]], "float32") * np.ones(
        (1, 4), "float32"
    )
    loss = ContinuousBernoulliNLL()
    lp = loss.log_prob(y, logits).numpy()
    assert np.all(np.isfinite(lp))
    # At l = 0 the density is uniform on [0, 1]: log p = 0.
    np.testing.assert_allclose(lp, [0.0, 0.0, 0.0], atol=1e-3)
    mean = loss.mean(logits).numpy()
    assert np.all(np.isfinite(mean))
    np.testing.assert_allclose(mean, 0.5, atol=1e-4)


def test_validate_rejects_outside_support():
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"in \[0, 1\]"):
        ContinuousBernoulliNLL(validate=True)(
            np.array([[1.5]]), np.array([[0.0]])
        )
