import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.losses import DiscretizedLogisticMixtureNLL
from tests.helpers import run_loss_test

tfd = tfp.distributions


def _params(rng, shape, m):
    """Raw decoder output (..., C * 3M) with plausible locs and scales."""
    logits = rng.normal(size=shape + (m,))
    locs = rng.uniform(-0.1, 1.1, size=shape + (m,))
    log_scales = rng.uniform(-5.0, -1.0, size=shape + (m,))
    per_element = np.concatenate([logits, locs, log_scales], axis=-1)
    return per_element.reshape(shape[:-1] + (-1,)).astype("float32")


def test_dlm_matches_tfp_and_shared_checks():
    rng = np.random.default_rng(0)
    n, c, m, bins = 6, 3, 2, 256
    y = (rng.integers(0, bins, size=(n, c)) / (bins - 1)).astype("float32")
    y[0, :2] = [0.0, 1.0]  # edge bins
    params = _params(rng, (n, c), m)
    logits, locs, log_scales = np.split(params.reshape(n, c, 3 * m), 3, -1)
    dist = tfd.MixtureSameFamily(
        tfd.Categorical(logits=logits),
        tfd.QuantizedDistribution(
            tfd.TransformedDistribution(
                tfd.Logistic(loc=locs * 255.0,
                             scale=np.exp(np.maximum(log_scales, -7.0))
                             * 255.0),
                tfp.bijectors.Shift(-0.5),
            ),
            low=0.0, high=255.0,
        ),
    )
    expected = -np.mean(
        np.sum(dist.log_prob(np.round(y * 255.0)).numpy(), axis=-1)
    )
    run_loss_test(
        DiscretizedLogisticMixtureNLL,
        {"num_components": m, "num_bins": bins, "min_log_scale": -7.0},
        y, params, expected,
    )


def test_closed_form_with_edge_bins():
    rng = np.random.default_rng(1)
    bins, m = 16, 3
    y = np.array([[0.0, 5 / 15, 1.0, 14 / 15]])
    params = _params(rng, (1, 4), m).astype("float64")
    logits, locs, log_scales = np.split(params.reshape(1, 4, 3 * m), 3, -1)
    s = np.exp(np.maximum(log_scales, -7.0))
    half = 0.5 / (bins - 1)
    x = y[..., None]

    def cdf(t):
        return 1.0 / (1.0 + np.exp(-(t - locs) / s))

    mass = np.where(x == 0.0, cdf(x + half),
                    np.where(x == 1.0, 1.0 - cdf(x - half),
                             cdf(x + half) - cdf(x - half)))
    w = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ref = np.log((w * mass).sum(-1)).sum(-1)
    lp = DiscretizedLogisticMixtureNLL(num_components=m, num_bins=bins)
    np.testing.assert_allclose(lp.log_prob(y, params), ref, rtol=1e-5)


@pytest.mark.parametrize("bins", [2, 256])
def test_levels_sum_to_one_including_tails(bins):
    # Components outside [0, 1], narrow (clamped) and very wide.
    logits = [0.3, -1.0, 0.5, 0.0]
    locs = [-0.3, 1.4, 0.5, 0.21]
    log_scales = [-2.0, -1.0, -30.0, 3.0]
    params = np.array([logits + locs + log_scales], "float32")
    y = (np.arange(bins) / (bins - 1)).astype("float32")[:, None]
    loss = DiscretizedLogisticMixtureNLL(num_components=4, num_bins=bins)
    lp = loss.log_prob(y, np.repeat(params, bins, axis=0)).numpy()
    assert np.all(np.isfinite(lp))
    np.testing.assert_allclose(tf.reduce_logsumexp(lp), 0.0, atol=1e-4)


def test_log_prob_compiles_under_xla_with_finite_gradients():
    rng = np.random.default_rng(2)
    y = tf.constant((rng.integers(0, 256, size=(2, 2, 2, 3)) / 255.0)
                    .astype("float32"))
    params = tf.constant(_params(rng, (2, 2, 2, 3), 5))
    loss = DiscretizedLogisticMixtureNLL()

    @tf.function(jit_compile=True)
    def value_and_grad(p):
        with tf.GradientTape() as tape:
            tape.watch(p)
            value = loss(y, p)
        return value, tape.gradient(value, p)

    value, grad = value_and_grad(params)
    np.testing.assert_allclose(value, loss(y, params), rtol=1e-5)
    assert np.all(np.isfinite(grad))


def test_mean_is_weighted_clipped_locs():
    params = np.array([[0.0, np.log(3.0), -0.5, 0.6, -3.0, -3.0]], "float32")
    mean = DiscretizedLogisticMixtureNLL(num_components=2).mean(params)
    assert tuple(mean.shape) == (1, 1) and mean.dtype == "float32"
    np.testing.assert_allclose(mean, [[0.25 * 0.0 + 0.75 * 0.6]], rtol=1e-5)


def test_params_size():
    cls = DiscretizedLogisticMixtureNLL
    assert cls.params_size((3,)) == 45
    assert cls.params_size((32, 32, 3), num_components=10) == 30 * 3072
    assert cls(num_components=2).params_size((3,)) == 18
    assert cls(num_components=2).params_per_element == 6


def test_wrong_params_width_is_a_clear_error():
    with pytest.raises(ValueError, match="params_size"):
        DiscretizedLogisticMixtureNLL(num_components=2)(
            np.zeros((2, 3)), np.zeros((2, 15))
        )


def test_validate_rejects_off_grid_data():
    loss = DiscretizedLogisticMixtureNLL(num_components=1, validate=True)
    assert np.isfinite(loss(np.array([[0.0, 128 / 255, 1.0]]),
                            np.zeros((1, 9))))
    # 0.5 is between two levels of a 256-level grid.
    for bad in [-0.1, 1.2, 0.5]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"on the grid j / 255"):
            loss(np.array([[bad]]), np.zeros((1, 3)))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="argument `num_bins`"):
        DiscretizedLogisticMixtureNLL(num_bins=1)
    with pytest.raises(ValueError, match="argument `num_components`"):
        DiscretizedLogisticMixtureNLL(num_components=0)
