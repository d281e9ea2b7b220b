"""Every likelihood loss scores only the observed elements under a mask
(`log_prob(y, params, mask)`, what `compile(missing_values=...)` uses)."""

import numpy as np
import pytest

from tests.test_properties_losses import LOSS_NAMES, SPECS, params_shape

SHAPE = (4, 3, 5)


def _case(name, seed=0):
    rng = np.random.default_rng(seed)
    loss = SPECS[name].make(rng)
    y = SPECS[name].data(rng, SHAPE, loss).astype("float32")
    params = rng.normal(size=params_shape(loss, SHAPE)).astype("float32")
    mask = rng.random(SHAPE) < 0.6
    mask[0] = True    # a complete row
    mask[1] = False   # a row with nothing observed
    return loss, y, params, mask


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_masked_log_prob_adds_up_and_ignores_the_missing(name):
    loss, y, params, mask = _case(name)
    full = loss.log_prob(y, params).numpy()
    observed = loss.log_prob(y, params, mask).numpy()
    hidden = loss.log_prob(y, params, ~mask).numpy()
    # The observed and the missing elements partition the full sum.
    np.testing.assert_allclose(observed + hidden, full, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(observed[0], full[0], rtol=1e-6)  # complete
    assert observed[1] == 0.0  # nothing observed: log p(x_obs) = log 1
    # Whatever hides behind the mask (NaN, a value out of the support)
    # changes nothing, also in the gradient w.r.t. the parameters.
    for fill in (np.nan, 1e9, -3.0):
        other = np.where(mask, y, fill).astype("float32")
        np.testing.assert_array_equal(
            loss.log_prob(other, params, mask).numpy(), observed)


@pytest.mark.parametrize("name", ["BernoulliNLL", "GaussianNLL(learned)",
                                  "BetaNLL"])
def test_gradients_are_finite_with_nan_behind_the_mask(name):
    import tensorflow as tf

    loss, y, params, mask = _case(name)
    y = np.where(mask, y, np.nan).astype("float32")
    params = tf.Variable(params)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(loss.log_prob(y, params, mask))
    grad = tape.gradient(total, params).numpy()
    assert np.all(np.isfinite(grad))
