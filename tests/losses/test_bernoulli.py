import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.losses import BernoulliNLL
from tests.helpers import run_loss_test

tfd = tfp.distributions


def test_bernoulli_matches_tfp_and_shared_checks():
    rng = np.random.default_rng(0)
    y = (rng.uniform(size=(8, 6)) < 0.3).astype("float32")
    logits = rng.normal(size=(8, 6)).astype("float32")
    expected = -np.mean(
        np.sum(tfd.Bernoulli(logits=logits).log_prob(y).numpy(), axis=-1)
    )
    run_loss_test(BernoulliNLL, {"validate": False}, y, logits, expected)


def test_bernoulli_images_sum_all_event_axes():
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=(4, 5, 5, 1)) < 0.5).astype("float32")
    logits = rng.normal(size=(4, 5, 5, 1)).astype("float32")
    lp = BernoulliNLL().log_prob(y, logits).numpy()
    ref = tfd.Bernoulli(logits=logits).log_prob(y).numpy().sum(axis=(1, 2, 3))
    np.testing.assert_allclose(lp, ref, rtol=1e-6)
    assert BernoulliNLL.params_size((5, 5, 1)) == 25


def test_bernoulli_validate_rejects_outside_support():
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"in \[0, 1\]"):
        BernoulliNLL(validate=True)(np.array([[2.0]]), np.array([[0.0]]))


def test_wrong_params_width_is_a_clear_error():
    with pytest.raises(ValueError, match="params_size"):
        BernoulliNLL()(np.zeros((2, 3)), np.zeros((2, 4)))
