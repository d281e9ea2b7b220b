import numpy as np
import pytest
import tensorflow as tf

from keras_vae.losses import LaplaceNLL
from tests.helpers import run_loss_test


def laplace_nll(y, loc, scale):
    """-log p(y | loc, b) summed over every non-batch axis, by hand."""
    y, loc, scale = (np.asarray(a, np.float64) for a in (y, loc, scale))
    per_element = np.abs(y - loc) / scale + np.log(2.0 * scale)
    return per_element.reshape(len(y), -1).sum(-1)


def _softplus(x):
    return np.logaddexp(0.0, x)


def test_fixed_scale_is_l1_over_the_scale():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(8, 6)).astype("float32")
    loc = rng.normal(size=(8, 6)).astype("float32")
    expected = laplace_nll(y, loc, 0.5).mean()
    run_loss_test(LaplaceNLL, {"scale": 0.5, "min_scale": 1e-3,
                               "validate": False}, y, loc, expected)


def test_learned_scale_per_element():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(6, 2, 3)).astype("float32")
    params = rng.normal(size=(6, 2, 6)).astype("float32")
    scale = _softplus(params[..., 3:]) + 0.01
    expected = laplace_nll(y, params[..., :3], scale).mean()
    run_loss_test(LaplaceNLL, {"scale": None, "min_scale": 0.01}, y, params,
                  expected)


def test_learned_scalar_reads_a_log_scale():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(5, 4, 4, 3)).astype("float32")
    loc = rng.normal(size=(5, 4, 4, 3)).astype("float32")
    params = np.concatenate([loc, np.full_like(loc, -0.7)], axis=-1)
    expected = laplace_nll(y, loc, np.exp(-0.7)).mean()
    loss = run_loss_test(LaplaceNLL, {"scale": "learned_scalar"}, y, params,
                         expected)
    np.testing.assert_allclose(loss.mean(params), loc)
    np.testing.assert_allclose(loss.scale_of(params), np.exp(-0.7) + 0 * loc,
                               rtol=1e-6)


def test_masked_log_prob_scores_the_observed_elements():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(3, 5)).astype("float32")
    loc = rng.normal(size=(3, 5)).astype("float32")
    mask = rng.random((3, 5)) < 0.5
    mask[0] = True
    got = LaplaceNLL(scale=2.0).log_prob(np.where(mask, y, np.nan), loc, mask)
    per_element = np.abs(y - loc) / 2.0 + np.log(4.0)
    np.testing.assert_allclose(-got.numpy(),
                               (per_element * mask).sum(-1), rtol=1e-5)


def test_params_size_and_wrong_width_hints():
    assert LaplaceNLL.params_size((4, 4, 3)) == 48
    assert LaplaceNLL.params_size(3, learned_scale=True) == 6
    assert LaplaceNLL(scale="learned_scalar").params_size((3,)) == 6
    assert LaplaceNLL(scale=None).params_per_element == 2
    with pytest.raises(ValueError, match="learned_scalar"):
        LaplaceNLL()(np.zeros((2, 3)), np.zeros((2, 6)))
    with pytest.raises(ValueError, match="SharedLogScale"):
        LaplaceNLL(scale="learned_scalar")(np.zeros((2, 3)), np.zeros((2, 3)))


@pytest.mark.parametrize("kwargs", [{"scale": 0.0}, {"scale": -1.0},
                                    {"scale": "learned"}, {"min_scale": 0.0},
                                    {"validate": 1}])
def test_invalid_arguments(kwargs):
    (name,) = kwargs
    with pytest.raises(ValueError, match=f"argument `{name}`"):
        LaplaceNLL(**kwargs)


def test_validate_rejects_non_finite_data():
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite"):
        LaplaceNLL(validate=True)(np.array([[np.inf]]), np.array([[0.0]]))
