"""VampPrior inside a VAEModel: the mixture, its sampled KL, training, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import special, stats

import keras_vae
from keras_vae import KLRegularizer, priors
from keras_vae.losses import BernoulliNLL
from keras_vae.random import derive_seed, standard_normal
from tests.builders import binary_data

D, L, K = 16, 2, 5
X = binary_data(256, d=D)
SEED = tf.constant([11, 12])


def vamp_vae(num_pseudo_inputs=K, activation="sigmoid", seed=0):
    """x (16 bits) -> Dense -> GaussianEncoderHead(2) -> KL(VampPrior) -> z."""
    x_in = keras.Input((D,), name="x")
    h = keras.layers.Dense(16, activation="relu")(x_in)
    prior = priors.VampPrior(num_pseudo_inputs, activation, seed=seed)
    q = KLRegularizer(prior=prior, seed=seed + 1)(
        keras_vae.GaussianEncoderHead(L)(h)
    )
    z = keras_vae.ReparameterizedSample(seed=seed + 2)(q)
    h = keras.layers.Dense(16, activation="relu")(z)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(D)(h))
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL())
    return vae, prior


def _components(vae, prior):
    """(loc, scale) of the K mixture components, float64, from the encoder."""
    loc, scale = vae.encoder(prior.pseudo_inputs)
    return np.asarray(loc, "float64"), np.asarray(scale, "float64")


def _mixture_log_prob(z, loc, scale):
    """log (1/K) sum_k N(z; loc_k, diag(scale_k^2)) by hand; z (..., L)."""
    comp = stats.norm.logpdf(
        np.asarray(z, "float64")[..., None, :], loc, scale
    ).sum(-1)  # (..., K)
    return special.logsumexp(comp, axis=-1) - np.log(len(loc))


def _spread_out(vae, prior):
    """Pseudo-inputs at data rows, so the components differ."""
    prior.set_pseudo_inputs(X[[0, 1, 2, 3, 5]][: prior.num_pseudo_inputs])
    loc, scale = _components(vae, prior)
    assert np.ptp(loc, axis=0).max() > 0.05, loc  # not one component


# ------------------------------------------------------------- the density
def test_log_prob_is_the_uniform_mixture_of_encoder_posteriors():
    vae, prior = vamp_vae()
    _spread_out(vae, prior)
    w = prior.pseudo_input_variables.numpy()
    assert prior.pseudo_input_variables.shape == (K, D)
    np.testing.assert_allclose(
        prior.pseudo_inputs, special.expit(w), rtol=1e-6
    )
    loc, scale = _components(vae, prior)
    # The components are the encoder's posteriors at the pseudo-inputs,
    # i.e. what the model's own stage gives for them.
    stage_loc, stage_scale = vae.levels[0].stage(prior.pseudo_inputs)[:2]
    np.testing.assert_allclose(loc, stage_loc, rtol=1e-6)
    np.testing.assert_allclose(scale, stage_scale, rtol=1e-6)

    rng = np.random.default_rng(1)
    z = (loc.mean(0) + rng.normal(size=(64, L)) * 1.5).astype("float32")
    p = prior.distribution(L)
    assert p.event_shape == (L,) and p.batch_shape == ()
    np.testing.assert_allclose(
        p.log_prob(z), _mixture_log_prob(z, loc, scale), rtol=1e-5, atol=1e-5
    )
    # Not just a single component (nor a non-uniform weighting of them).
    one = stats.norm.logpdf(z, loc[0], scale[0]).sum(-1)
    assert np.abs(p.log_prob(z).numpy() - one).max() > 1e-2


def test_sampled_kl_of_the_model_is_log_q_minus_log_p_at_its_draws():
    vae, prior = vamp_vae()
    _spread_out(vae, prior)
    x, k = X[:8], 4000
    t = vae.trace(x, x, num_samples=k, seed=SEED)
    loc, scale = (np.asarray(a, "float64") for a in vae.encoder(x))
    c_loc, c_scale = _components(vae, prior)

    # The same draws by hand: the sampler's noise for this seed.
    eps = standard_normal((k, 8, L), seed=derive_seed(SEED, 0)).numpy().astype("float64")
    z = loc + scale * eps
    log_q = stats.norm.logpdf(z, loc, scale).sum(-1)
    log_p = _mixture_log_prob(z, c_loc, c_scale)
    np.testing.assert_allclose(t.log_qz, log_q, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(t.log_pz, log_p, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        t.kl, (log_q - log_p).mean(0), rtol=1e-4, atol=1e-4
    )

    # ... and it agrees with an independent Monte Carlo estimate (TFP's
    # sampler, other noise) within 5 standard errors of the difference.
    q = vae.sampler.posterior([loc.astype("float32"), scale.astype("float32")])
    z2 = q.sample(k, seed=tf.constant([5, 6])).numpy()
    ratio = stats.norm.logpdf(z2, loc, scale).sum(-1) - _mixture_log_prob(
        z2, c_loc, c_scale
    )
    se = np.sqrt((log_q - log_p).var(0) / k + ratio.var(0) / k)
    diff = np.abs(t.kl.numpy() - ratio.mean(0))
    assert np.all(diff < 5 * se), (diff, se)
    # The estimate is not the KL to N(0, I) (a prior silently ignored).
    kl_std = 0.5 * np.sum(scale**2 + loc**2 - 1 - 2 * np.log(scale), -1)
    assert np.abs(t.kl.numpy() - kl_std).max() > 20 * se.max()


def test_kl_regularizer_sampled_kl_with_many_z_agrees_with_monte_carlo():
    vae, prior = vamp_vae()
    _spread_out(vae, prior)
    loc, scale = vae.encoder(X[:8])
    q = vae.sampler.posterior([loc, scale])
    z1 = q.sample(20_000, seed=tf.constant([1, 1]))
    z2 = q.sample(20_000, seed=tf.constant([2, 2])).numpy()
    est = vae.kl_layer.kl_divergence([loc, scale], z=z1).numpy()
    c_loc, c_scale = _components(vae, prior)
    loc, scale = np.asarray(loc, "float64"), np.asarray(scale, "float64")
    ratio = stats.norm.logpdf(z2, loc, scale).sum(-1) - _mixture_log_prob(
        z2, c_loc, c_scale
    )
    se = ratio.std(0) / np.sqrt(len(ratio))
    assert np.all(np.abs(est - ratio.mean(0)) < 5 * np.sqrt(2) * se), (
        est, ratio.mean(0), se,
    )


def test_prior_samples_have_the_mixture_mean_and_covariance():
    vae, prior = vamp_vae()
    _spread_out(vae, prior)
    loc, scale = _components(vae, prior)
    n = 200_000
    z = prior.distribution(L).sample(n, seed=tf.constant([3, 4])).numpy()
    z = z.astype("float64")
    mean = loc.mean(0)
    second = np.mean(
        [np.diag(s**2) + np.outer(m, m) for m, s in zip(loc, scale)], 0
    )
    cov = second - np.outer(mean, mean)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(z.mean(0) - mean) < 5 * se_mean), (z.mean(0), mean)
    centred = z - z.mean(0)
    prods = centred[:, :, None] * centred[:, None, :]  # (n, L, L)
    se_cov = prods.std(0) / np.sqrt(n)
    assert np.all(np.abs(prods.mean(0) - cov) < 5 * se_cov + 1e-9), (
        prods.mean(0), cov,
    )
    # The spread between components is part of the covariance.
    within = np.mean([np.diag(s**2) for s in scale], 0)
    assert np.abs(cov - within).max() > 10 * se_cov.max()


# -------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    vae, prior = vamp_vae()
    u0 = prior.pseudo_inputs.numpy().copy()
    enc0 = [w.numpy().copy() for w in vae.encoder.trainable_weights]
    hist = vae.fit(X, batch_size=64, epochs=2, verbose=0).history
    return vae, prior, u0, enc0, hist


def test_fit_under_xla_moves_pseudo_inputs_and_encoder(trained):
    vae, prior, u0, enc0, hist = trained
    assert vae.jit_compile
    # The pseudo-inputs are a weight of the model, saved and trained once.
    names = [w.path for w in vae.weights]
    assert sum("pseudo_inputs" in n for n in names) == 1, names
    assert sum("pseudo_inputs" in w.path for w in vae.trainable_weights) == 1
    assert np.isfinite(hist["loss"]).all() and np.isfinite(hist["kl"]).all()
    assert np.abs(prior.pseudo_inputs.numpy() - u0).max() > 1e-3
    assert all(
        not np.allclose(a, w.numpy())
        for a, w in zip(enc0, vae.encoder.trainable_weights)
    )
    # The KL the model reports is the sampled one, positive on average.
    assert np.mean(hist["kl"]) > 0


def test_keras_save_load_round_trip(trained, tmp_path):
    vae, prior, _, _, _ = trained
    vae.save(tmp_path / "vamp.keras")
    loaded = keras.saving.load_model(tmp_path / "vamp.keras", safe_mode=True)
    got = loaded.kl_layer.prior
    assert type(got) is priors.VampPrior and got is not prior
    assert got.get_config() == prior.get_config()
    np.testing.assert_array_equal(got.pseudo_inputs, prior.pseudo_inputs)
    x = X[:16]
    np.testing.assert_array_equal(
        loaded.log_likelihood(x, num_samples=50),
        vae.log_likelihood(x, num_samples=50),
    )
    np.testing.assert_array_equal(loaded.sample(4, seed=3), vae.sample(4, seed=3))

    # The loaded prior is tied to the loaded model's encoder, not the old one.
    z = np.random.default_rng(0).normal(size=(8, L)).astype("float32")
    before = got.distribution(L).log_prob(z).numpy()
    saved = [w.numpy().copy() for w in vae.encoder.trainable_weights]
    try:
        for w in vae.encoder.trainable_weights:
            w.assign(w + 0.5)
        np.testing.assert_array_equal(got.distribution(L).log_prob(z), before)
    finally:
        for w, a in zip(vae.encoder.trainable_weights, saved):
            w.assign(a)
    loc, scale = _components(loaded, got)
    np.testing.assert_allclose(
        before, _mixture_log_prob(z, loc, scale), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "activation, values, lo, hi",
    [(None, [-3.0, 0.0, 2.5], -np.inf, np.inf),
     ("sigmoid", [0.0, 0.3, 0.9, 1.0], 0.05, 0.95),
     ("hard_sigmoid", [-0.2, 0.0, 0.3, 1.0, 1.5], 0.05, 0.95),
     ("tanh", [-1.0, -0.5, 0.0, 0.7, 1.0], -0.9, 0.9)],
)
def test_set_pseudo_inputs_inverts_the_activation(activation, values, lo, hi):
    prior = priors.VampPrior(3, pseudo_input_activation=activation)
    prior.build((None, D))
    rng = np.random.default_rng(0)
    target = rng.choice(np.array(values, "float32"), size=(3, D))
    prior.set_pseudo_inputs(target)
    np.testing.assert_allclose(
        prior.pseudo_inputs, np.clip(target, lo, hi), rtol=1e-4, atol=1e-5
    )


def test_set_pseudo_inputs_in_a_model_sets_the_components():
    vae, prior = vamp_vae(activation="hard_sigmoid")
    prior.set_pseudo_inputs(X[:K], margin=0.0)
    np.testing.assert_allclose(prior.pseudo_inputs, X[:K], atol=1e-6)
    loc, _ = _components(vae, prior)
    np.testing.assert_allclose(loc, vae.encode(X[:K])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["sigmoid", "hard_sigmoid"])
def test_pseudo_inputs_started_from_binary_data_still_learn(activation):
    # Binary pixels of exactly 0/1 sit where hard_sigmoid is flat: the
    # default margin keeps them inside, so training moves them.
    vae, prior = vamp_vae(activation=activation)
    prior.set_pseudo_inputs(X[:K])
    before = np.asarray(prior.pseudo_inputs).copy()
    vae.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss=keras_vae.losses.BernoulliNLL())
    vae.fit(X, batch_size=64, epochs=2, verbose=0)
    assert np.abs(np.asarray(prior.pseudo_inputs) - before).max() > 1e-3


# ---------------------------------------------------------------- errors
def test_in_a_plain_keras_model_it_says_it_has_no_encoder():
    x_in = keras.Input((D,))
    q = KLRegularizer(prior=priors.VampPrior(3))(
        keras_vae.GaussianEncoderHead(L)(x_in)
    )
    z = keras_vae.ReparameterizedSample()(q)
    model = keras.Model(x_in, keras.layers.Dense(D)(z))
    with pytest.raises(ValueError, match="VampPrior has no encoder"):
        model(X[:4])


def test_encoder_reading_two_inputs_is_a_clear_error():
    x_in, y_in = keras.Input((D,)), keras.Input((1,))
    h = keras.layers.Concatenate()([x_in, y_in])
    q = KLRegularizer(prior=priors.VampPrior(3))(
        keras_vae.GaussianEncoderHead(L)(h)
    )
    z = keras_vae.ReparameterizedSample()(q)
    out = keras.layers.Dense(D)(keras.layers.Concatenate()([z, y_in]))
    with pytest.raises(ValueError, match="exactly one model input"):
        keras_vae.VAEModel([x_in, y_in], out)


def test_conditional_decoder_only_is_accepted():
    # The encoder reads x alone (the label enters the decoder): allowed.
    x_in, y_in = keras.Input((D,)), keras.Input((1,))
    prior = priors.VampPrior(3)
    q = KLRegularizer(prior=prior)(keras_vae.GaussianEncoderHead(L)(x_in))
    z = keras_vae.ReparameterizedSample()(q)
    out = keras.layers.Dense(D)(keras.layers.Concatenate()([z, y_in]))
    keras_vae.VAEModel([x_in, y_in], out)
    assert prior.pseudo_input_variables.shape == (3, D)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"num_pseudo_inputs": 0}, "num_pseudo_inputs"),
     ({"num_pseudo_inputs": 2.5}, "num_pseudo_inputs"),
     ({"pseudo_input_activation": "relu"}, "pseudo_input_activation"),
     ({"seed": "a"}, "seed")],
)
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=rf"argument `{name}`.*Received: {name}="):
        priors.VampPrior(**kwargs)


# ---------------------------------------------------------------- config
def test_config_round_trip():
    prior = priors.VampPrior(
        7, pseudo_input_activation="tanh", seed=5,
        initializer=keras.initializers.RandomUniform(-0.2, 0.3, seed=5),
    )
    config = prior.get_config()
    assert config["num_pseudo_inputs"] == 7
    assert config["pseudo_input_activation"] == "tanh"
    assert config["seed"] == 5
    revived = priors.VampPrior.from_config(config)
    assert revived.get_config() == config
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(prior)
    )
    assert type(again) is priors.VampPrior
    assert again.get_config() == config
    # Same initializer, same pseudo-inputs.
    for p in (prior, again):
        p.build((None, 4))
    np.testing.assert_array_equal(again.pseudo_inputs, prior.pseudo_inputs)
    w = again.pseudo_input_variables.numpy()
    assert w.min() >= -0.2 and w.max() <= 0.3 and w.std() > 0.05
    # Inside a KLRegularizer's config, as a saved model holds it.
    layer = KLRegularizer(prior=prior, weight=0.5)
    back = KLRegularizer.from_config(layer.get_config())
    assert type(back.prior) is priors.VampPrior
    assert back.prior.get_config() == config
