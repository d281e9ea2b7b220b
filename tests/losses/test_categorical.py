import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.losses import CategoricalNLL
from tests.helpers import run_loss_test

tfd = tfp.distributions


def test_categorical_matches_tfp_and_shared_checks():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=(8, 3)).astype("int32")
    logits = rng.normal(size=(8, 15)).astype("float32")
    dist = tfd.Categorical(logits=logits.reshape(8, 3, 5))
    expected = -np.mean(np.sum(dist.log_prob(y).numpy(), axis=-1))
    run_loss_test(CategoricalNLL, {"num_classes": 5, "validate": False},
                  y, logits, expected)


def test_float_levels_and_images():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, size=(2, 3, 3, 2))
    logits = rng.normal(size=(2, 3, 3, 8)).astype("float32")
    ref = tfd.Categorical(logits=logits.reshape(2, 3, 3, 2, 4)).log_prob(y)
    ref = ref.numpy().sum(axis=(1, 2, 3))
    loss = CategoricalNLL(num_classes=4)
    np.testing.assert_allclose(
        loss.log_prob(y.astype("float32"), logits), ref, rtol=1e-6
    )
    # A level stored with float error still scores as the nearest level.
    np.testing.assert_allclose(
        loss.log_prob(y.astype("float32") - 1e-5, logits), ref, rtol=1e-6
    )


def test_mean_is_expected_level():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 2 * 6)).astype("float32")
    mean = CategoricalNLL(num_classes=6).mean(logits)
    assert mean.dtype == "float32" and tuple(mean.shape) == (3, 2)
    p = np.exp(logits.reshape(3, 2, 6))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(mean, (p * np.arange(6)).sum(-1), rtol=1e-5)


def test_params_size():
    assert CategoricalNLL.params_size((3,)) == 768
    assert CategoricalNLL.params_size((3,), num_classes=16) == 48
    assert CategoricalNLL(num_classes=16).params_size((2, 2, 3)) == 192
    assert CategoricalNLL(num_classes=16).params_per_element == 16


def test_wrong_params_width_is_a_clear_error():
    with pytest.raises(ValueError, match="params_size"):
        CategoricalNLL(num_classes=4)(np.zeros((2, 3)), np.zeros((2, 10)))


def test_validate_rejects_outside_support():
    loss = CategoricalNLL(num_classes=4, validate=True)
    assert np.isfinite(loss(np.array([[0.0, 3.0]]), np.zeros((1, 8))))
    for bad in [-1.0, 4.0, 1.5]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"integers in \{0, \.\.\., 3\}"):
            loss(np.array([[bad]]), np.zeros((1, 4)))


def test_invalid_num_classes():
    with pytest.raises(ValueError, match="argument `num_classes`"):
        CategoricalNLL(num_classes=1)
