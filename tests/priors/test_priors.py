import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import keras_vae
from keras_vae import KLRegularizer, priors
from keras_vae.losses import BernoulliNLL
from keras_vae.objectives import has_analytic_kl
from tests.helpers import run_layer_test
from tests.builders import binary_data

tfd = tfp.distributions
RNG = np.random.default_rng(0)
LOC = RNG.normal(size=(6, 3)).astype("float32")
SCALE = RNG.uniform(0.3, 2.0, size=(6, 3)).astype("float32")
Z = RNG.normal(size=(5, 3)).astype("float32")


def _softplus(x):
    return np.log1p(np.exp(x))


def test_standard_normal_log_prob():
    p = priors.StandardNormal().distribution(3)
    want = -0.5 * np.sum(Z**2, -1) - 1.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(p.log_prob(Z), want, rtol=1e-5)


def test_learned_gaussian_matches_tfp_and_keeps_analytic_kl():
    prior = priors.LearnedGaussian(min_scale=0.01)
    prior.build((None, 3))
    prior.loc.assign([0.5, -1.0, 0.0])
    prior.raw_scale.assign([0.0, 1.0, -1.0])
    p = prior.distribution(3)
    scale = _softplus(np.array([0.0, 1.0, -1.0])) + 0.01
    ref = tfd.MultivariateNormalDiag([0.5, -1.0, 0.0], scale)
    np.testing.assert_allclose(p.log_prob(Z), ref.log_prob(Z), rtol=1e-5)
    q = tfd.MultivariateNormalDiag(LOC, SCALE)
    assert has_analytic_kl(q, p)
    fresh = priors.LearnedGaussian()
    fresh.build((None, 3))
    np.testing.assert_allclose(fresh.distribution(3).stddev(), np.ones(3), rtol=1e-5)


def test_mixture_matches_tfp_and_its_kl_is_sampled():
    prior = priors.MixtureOfGaussians(num_components=4, seed=1)
    prior.build((None, 3))
    p = prior.distribution(3)
    w = np.exp(prior.logits.numpy())
    w /= w.sum()
    s = _softplus(prior.raw_scales.numpy()) + prior.min_scale
    comps = [tfd.MultivariateNormalDiag(prior.locs.numpy()[k], s[k]).prob(Z)
             for k in range(4)]
    want = np.log(np.sum([w[k] * comps[k] for k in range(4)], axis=0))
    np.testing.assert_allclose(p.log_prob(Z), want, rtol=1e-5)
    layer = KLRegularizer(prior=prior)
    layer((LOC, SCALE))
    q = tfd.MultivariateNormalDiag(LOC, SCALE)
    assert not has_analytic_kl(q, p)
    # The sampled KL with many z agrees with an independent Monte Carlo
    # estimate within 5 standard errors.
    z1 = q.sample(100_000, seed=tf.constant([1, 1]))
    z2 = q.sample(100_000, seed=tf.constant([2, 2]))
    est = layer.kl_divergence([LOC, SCALE], z=z1).numpy()
    ratio = (q.log_prob(z2) - p.log_prob(z2)).numpy()
    se = ratio.std(0) / np.sqrt(len(ratio))
    assert np.all(np.abs(est - ratio.mean(0)) < 5 * np.sqrt(2) * se)


@pytest.mark.parametrize(
    "prior, num_weights",
    [(lambda: priors.LearnedGaussian(min_scale=0.01), 2),  # loc, raw_scale
     (lambda: priors.MixtureOfGaussians(num_components=3, seed=2), 3)],
    ids=["learned_gaussian", "mixture"])
def test_kl_regularizer_with_prior_passes_shared_checks(prior, num_weights):
    run_layer_test(KLRegularizer, {"prior": prior(), "seed": 4}, (LOC, SCALE),
                   expected_output_shape=((6, 3), (6, 3)),
                   expected_num_trainable_weights=num_weights,
                   expected_num_non_trainable_weights=1,
                   expected_num_seed_generators=1, expected_num_losses=1)


def test_vae_trains_prior_weights_and_round_trips(tmp_path):
    x = binary_data(256)
    x_in = keras.Input((32,))
    prior = priors.MixtureOfGaussians(num_components=3, seed=0)
    q = KLRegularizer(prior=prior)(keras_vae.GaussianEncoderHead(2)(
        keras.layers.Dense(16, activation="relu")(x_in)))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(32)(z))
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL(),
                objective="iwae", num_samples=3)
    before = prior.locs.numpy().copy()
    hist = vae.fit(x, batch_size=64, epochs=2, verbose=0).history
    assert np.isfinite(hist["loss"]).all()
    assert not np.allclose(prior.locs.numpy(), before)  # the prior learns
    assert vae.sample(4, seed=1).shape == (4, 32)
    vae.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(loaded.kl_layer.prior.locs.numpy(),
                                  prior.locs.numpy())
    np.testing.assert_array_equal(loaded.sample(4, seed=1), vae.sample(4, seed=1))


@pytest.mark.parametrize("kwargs, match", [
    ({"num_components": 0}, "num_components"),
    ({"min_scale": -1.0}, "min_scale"),
])
def test_bad_prior_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"argument `{match}`"):
        priors.MixtureOfGaussians(**kwargs)
