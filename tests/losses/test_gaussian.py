import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.losses import GaussianNLL
from tests.helpers import run_loss_test

tfd = tfp.distributions


def _softplus(x):
    return np.logaddexp(0.0, x)


def test_fixed_scale_matches_tfp_and_shared_checks():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(8, 6)).astype("float32")
    loc = rng.normal(size=(8, 6)).astype("float32")
    expected = -np.mean(np.sum(
        tfd.Normal(loc=loc, scale=0.5).log_prob(y).numpy(), axis=-1
    ))
    run_loss_test(
        GaussianNLL,
        {"scale": 0.5, "min_scale": 1e-3, "validate": False},
        y, loc, expected,
    )


def test_learned_scale_matches_tfp_and_shared_checks():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(6, 2, 3)).astype("float32")
    params = rng.normal(size=(6, 2, 6)).astype("float32")
    loc, raw = params[..., :3], params[..., 3:]
    dist = tfd.Normal(loc=loc, scale=_softplus(raw) + 0.01)
    expected = -np.mean(np.sum(dist.log_prob(y).numpy(), axis=(1, 2)))
    run_loss_test(
        GaussianNLL, {"scale": None, "min_scale": 0.01}, y, params, expected
    )


def test_min_scale_bounds_the_learned_scale():
    loss = GaussianNLL(scale=None, min_scale=0.1)
    params = np.concatenate(
        [np.zeros((1, 2)), np.full((1, 2), -200.0)], axis=-1
    ).astype("float32")
    np.testing.assert_allclose(
        loss.distribution(params).distribution.stddev(), [[0.1, 0.1]],
        rtol=1e-6,
    )
    np.testing.assert_allclose(loss.mean(params), [[0.0, 0.0]])


def test_params_size_fixed_and_learned():
    assert GaussianNLL.params_size((28, 28, 1)) == 784
    assert GaussianNLL.params_size(10, learned_scale=True) == 20
    assert GaussianNLL().params_per_element == 1
    assert GaussianNLL(scale=None).params_per_element == 2
    # On an instance, the default follows that instance's configuration.
    assert GaussianNLL(scale=None).params_size((3,)) == 6
    assert GaussianNLL(scale=2.0).params_size((3,)) == 3


def test_fixed_scale_with_twice_the_params_suggests_learned_scale():
    with pytest.raises(ValueError, match=r"scale=None"):
        GaussianNLL(scale=1.0)(np.zeros((2, 3)), np.zeros((2, 6)))
    with pytest.raises(ValueError, match="learned_scale=True"):
        GaussianNLL(scale=None)(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="params_size"):
        GaussianNLL()(np.zeros((2, 3)), np.zeros((2, 4)))


def test_invalid_arguments():
    with pytest.raises(
        ValueError,
        match=r"argument `scale`. Expected a float > 0, or None for a "
        r"learned scale. Received: scale=0.0",
    ):
        GaussianNLL(scale=0.0)
    for kwargs in [{"scale": -1.0}, {"scale": "1"}, {"min_scale": 0.0}]:
        (name,) = kwargs
        with pytest.raises(ValueError, match=f"argument `{name}`"):
            GaussianNLL(**kwargs)


def test_validate_rejects_non_finite_data():
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite"):
        GaussianNLL(validate=True)(np.array([[np.nan]]), np.array([[0.0]]))
