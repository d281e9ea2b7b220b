import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import KLRegularizer, priors
from tests.helpers import run_layer_test

tfd = tfp.distributions
RNG = np.random.default_rng(0)
LOC = RNG.normal(size=(6, 3)).astype("float32")
SCALE = RNG.uniform(0.3, 2.0, size=(6, 3)).astype("float32")
TRIL = np.tril(RNG.normal(size=(6, 3, 3)) * 0.3).astype("float32")
TRIL[:, range(3), range(3)] = RNG.uniform(0.5, 1.5, size=(6, 3))


class TwoBumpPrior(priors.Prior):
    """A prior with no analytic KL to a Gaussian (for the sampled path)."""

    def distribution(self, latent_dim):
        return tfd.MixtureSameFamily(
            tfd.Categorical(probs=[0.3, 0.7]),
            tfd.MultivariateNormalDiag(
                loc=tf.stack([-tf.ones(latent_dim), tf.ones(latent_dim)]),
                scale_diag=tf.ones((2, latent_dim)),
            ),
        )


@pytest.mark.parametrize(
    "kwargs, scale",
    [({}, SCALE), ({"weight": 0.5, "free_bits": 0.1, "seed": 3}, SCALE),
     ({"weight": 3.0, "capacity": 2.0}, SCALE),
     ({"prior": priors.StandardNormal()}, TRIL)],
)
def test_shared_layer_checks(kwargs, scale):
    run_layer_test(
        KLRegularizer, kwargs, (LOC, scale),
        expected_output_shape=((6, 3), scale.shape),
    )


def _monte_carlo_kl(q, p, n, seed=0):
    z = q.sample(n, seed=tf.constant([seed, 1]))
    ratio = (q.log_prob(z) - p.log_prob(z)).numpy()  # (n, B)
    return ratio.mean(0), ratio.std(0) / np.sqrt(n)


@pytest.mark.parametrize("scale", [SCALE, TRIL], ids=["diag", "full"])
def test_kl_equals_tfp_and_monte_carlo(scale):
    layer = KLRegularizer()
    layer((LOC, scale))
    kl = layer.kl_divergence([LOC, scale]).numpy()
    if scale.ndim == 2:
        q = tfd.MultivariateNormalDiag(LOC, scale)
    else:
        q = tfd.MultivariateNormalTriL(LOC, scale)
    p = tfd.MultivariateNormalDiag(tf.zeros(3), tf.ones(3))
    np.testing.assert_allclose(kl, tfd.kl_divergence(q, p), rtol=1e-5)
    # 100k-sample Monte Carlo: within 5 standard errors (~1e-2 nats here).
    mc, se = _monte_carlo_kl(q, p, 100_000)
    assert np.all(np.abs(kl - mc) < 5 * se + 1e-6), (kl, mc, se)
    # Closed form for the diagonal case, written out.
    if scale.ndim == 2:
        closed = 0.5 * np.sum(scale**2 + LOC**2 - 1 - 2 * np.log(scale), -1)
        np.testing.assert_allclose(kl, closed, rtol=1e-5)


def test_added_loss_is_weighted_batch_mean():
    layer = KLRegularizer(weight=2.5)
    layer((LOC, SCALE))
    kl = layer.kl_divergence([LOC, SCALE]).numpy()
    np.testing.assert_allclose(float(layer.losses[0]), 2.5 * kl.mean(), rtol=1e-6)


def test_free_bits_floor_per_dimension():
    layer = KLRegularizer(free_bits=0.5)
    loc = np.zeros((4, 3), "float32")
    scale = np.ones((4, 3), "float32")
    scale[:, 0] = 0.2  # dimension 0 has KL > 0.5, the others KL = 0
    layer((loc, scale))
    kl0 = 0.5 * (0.2**2 - 1 - 2 * np.log(0.2))
    np.testing.assert_allclose(float(layer.losses[0]), kl0 + 2 * 0.5, rtol=1e-5)


def test_weight_variable_is_read_by_a_compiled_function():
    layer = KLRegularizer()
    layer((LOC, SCALE))
    fn = tf.function(lambda: layer.penalty(layer.kl_divergence([LOC, SCALE])), jit_compile=True)
    first = float(fn())
    layer.kl_weight.assign(0.25)
    np.testing.assert_allclose(float(fn()), 0.25 * first, rtol=1e-6)


def test_sampled_estimate_when_no_analytic_kl():
    layer = KLRegularizer(prior=TwoBumpPrior(), seed=0)
    layer((LOC, SCALE))
    q = tfd.MultivariateNormalDiag(LOC, SCALE)
    p = layer.prior_distribution()
    mc, se = _monte_carlo_kl(q, p, 100_000, seed=5)
    z = q.sample(100_000, seed=tf.constant([9, 9]))
    est = layer.kl_divergence([LOC, SCALE], z=z).numpy()
    assert np.all(np.abs(est - mc) < 5 * se * np.sqrt(2) + 1e-6)
    # The add_loss path draws one z per row: unbiased over many calls.
    values = [float(layer((LOC, SCALE)) and layer.losses[0]) for _ in range(400)]
    spread = np.std(values) / np.sqrt(len(values))
    assert abs(np.mean(values) - mc.mean()) < 5 * spread


def test_identity_in_a_plain_keras_model():
    loc_in, scale_in = keras.Input((3,)), keras.Input((3,))
    out = KLRegularizer()((loc_in, scale_in))
    model = keras.Model([loc_in, scale_in], list(out))
    got = model([LOC, SCALE])
    np.testing.assert_array_equal(got[0], LOC)
    np.testing.assert_array_equal(got[1], SCALE)
    assert len(model.losses) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [({"weight": -1}, r"argument `weight`.*Received: weight=-1"),
     ({"free_bits": -0.1}, r"argument `free_bits`"),
     ({"prior": "laplace"}, r"argument `prior`.*Received: prior='laplace'")],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KLRegularizer(**kwargs)


def test_scale_of_wrong_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="KLRegularizer expects"):
        KLRegularizer()((keras.Input((3,)), keras.Input((2,))))
