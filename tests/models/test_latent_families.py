"""IAFSample and GumbelSoftmaxSample latents inside VAEModel."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import special, stats

import keras_vae
from keras_vae.random import derive_seed
from keras_vae.losses import BernoulliNLL
from tests.builders import binary_data

D = 12
X = binary_data(256, d=D, seed=3)
SEED = tf.constant([21, 22])


def _bernoulli_log_prob(x, logits):
    """sum_d log Bernoulli(x_d; sigmoid(logits_d)), float64; broadcasts."""
    x, logits = np.asarray(x, "float64"), np.asarray(logits, "float64")
    return np.sum(x * logits - np.logaddexp(0.0, logits), -1)


# ------------------------------------------------------------------- IAF
def iaf_vae(latent=3, seed=0):
    x_in = keras.Input((D,), name="x")
    h = keras.layers.Dense(16, activation="relu")(x_in)
    loc, scale = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(latent)(h))
    z = keras_vae.IAFSample(num_flows=2, hidden_units=(8,), seed=seed)(
        [loc, scale, h]
    )
    h = keras.layers.Dense(16, activation="relu")(z)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(D)(h), name="iaf_vae")
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL())
    return vae


def _randomise(layer, scale=0.4, seed=7):
    """Random flow weights, so the flow is far from its initial contraction."""
    rng = np.random.default_rng(seed)
    for w in layer.trainable_weights:
        w.assign(rng.normal(size=w.shape, scale=scale).astype("float32"))


def test_iaf_kl_and_terms_are_the_flow_draws():
    vae = iaf_vae()
    sampler = vae.sampler
    assert isinstance(sampler, keras_vae.IAFSample) and sampler.sampled_kl
    _randomise(sampler)
    x, k = X[:8], 64
    t = vae.trace(x, x, num_samples=k, seed=SEED)

    # Independently: the stage's (loc, scale, context), the flow's draws
    # with the same seed, the prior by hand, the decoder by hand.
    loc, scale, context = vae.levels[0].stage(x)
    z, log_q = sampler.draw_latent([loc, scale], [context], k,
                                   seed=derive_seed(SEED, 0))
    z64 = z.numpy().astype("float64")
    log_p = stats.norm.logpdf(z64).sum(-1).reshape(k, 8)
    log_q = log_q.numpy().reshape(k, 8)
    np.testing.assert_allclose(t.log_qz, log_q, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t.log_pz, log_p, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t.kl, (log_q - log_p).mean(0), rtol=1e-5,
                               atol=1e-5)
    logits = vae.decoder(z).numpy()
    np.testing.assert_allclose(
        t.log_px_z, _bernoulli_log_prob(np.tile(x, (k, 1)), logits)
        .reshape(k, 8), rtol=1e-5, atol=1e-4,
    )
    # The flow is used: log q is not the Gaussian density of z, and the
    # KL is not KL(N(loc, scale) || N(0, I)).
    gauss = stats.norm.logpdf(z64.reshape(k, 8, -1), loc, scale).sum(-1)
    assert np.abs(gauss - log_q).min() > 1e-2
    loc, scale = np.asarray(loc, "float64"), np.asarray(scale, "float64")
    kl_gauss = 0.5 * np.sum(scale**2 + loc**2 - 1 - 2 * np.log(scale), -1)
    assert np.abs(t.kl.numpy() - kl_gauss).max() > 0.1
    # Fixed seed: the same terms again; another seed, other draws.
    again = vae.trace(x, x, num_samples=k, seed=SEED)
    np.testing.assert_array_equal(again.kl, t.kl)
    other = vae.trace(x, x, num_samples=k, seed=SEED + 1)
    assert not np.allclose(other.kl, t.kl)


@pytest.fixture(scope="module")
def trained_iaf():
    keras.utils.set_random_seed(0)
    vae = iaf_vae()
    made = [w.numpy().copy() for w in vae.sampler.trainable_weights]
    hist = vae.fit(X, batch_size=64, epochs=4, verbose=0).history
    return vae, made, hist


def test_iaf_fit_under_xla_trains_the_flow(trained_iaf):
    vae, made, hist = trained_iaf
    assert vae.jit_compile
    for key in ("loss", "elbo", "kl", "reconstruction"):
        assert np.isfinite(hist[key]).all(), (key, hist[key])
    assert hist["loss"][-1] < hist["loss"][0]
    assert all(
        not np.allclose(a, w.numpy())
        for a, w in zip(made, vae.sampler.trainable_weights)
    )


def test_iaf_log_likelihood_is_above_the_elbo(trained_iaf):
    vae, _, _ = trained_iaf
    x = X[:64]
    log_px = vae.log_likelihood(x, num_samples=500)
    elbo = vae.elbo(x, num_samples=20)
    assert np.all(np.isfinite(log_px)) and np.all(np.isfinite(elbo))
    gap = log_px - elbo
    # Each ELBO averages 20 draws; allow 3 standard errors of the mean gap.
    margin = 3 * gap.std() / np.sqrt(len(gap))
    assert gap.mean() > -margin, (gap.mean(), margin)
    assert np.mean(gap > -0.5) > 0.9


# -------------------------------------------------------------- Gumbel
N, C = 2, 3
STATES = np.array(
    [np.eye(C)[list(s)] for s in itertools.product(range(C), repeat=N)],
    "float32",
)  # (9, N, C): every one-hot state


def gumbel_vae(d=D, decoder=None, seed=0):
    x_in = keras.Input((d,), name="x")
    h = keras.layers.Dense(16, activation="relu")(x_in)
    logits = keras_vae.KLRegularizer()(keras_vae.GumbelSoftmaxHead(N, C)(h))
    z = keras_vae.GumbelSoftmaxSample(temperature=0.5, seed=seed)(logits)
    flat = keras.layers.Flatten()(z)
    out = decoder(flat) if decoder is not None else keras.layers.Dense(d)(
        keras.layers.Dense(16, activation="relu")(flat))
    vae = keras_vae.VAEModel(x_in, out, name="gumbel_vae")
    vae.compile(optimizer=keras.optimizers.Adam(2e-2), loss=BernoulliNLL())
    return vae


def _exact(vae, x):
    """Exact log p(x), ELBO and per-example Var_q log p(x|z), by enumeration."""
    log_px_z = _bernoulli_log_prob(x[None], vae.decode(STATES)[:, None])  # (9, B)
    log_pz = -N * np.log(C)
    log_px = special.logsumexp(log_px_z + log_pz, axis=0)
    logits = np.asarray(vae.encode(x), "float64")  # (B, N, C)
    log_pi = logits - special.logsumexp(logits, -1, keepdims=True)
    # log q(state | x) for each of the 9 states: (9, B)
    log_q = np.einsum("snc,bnc->sb", STATES.astype("float64"), log_pi)
    q = np.exp(log_q)
    expected = (q * log_px_z).sum(0)
    kl = (q * (log_q - log_pz)).sum(0)
    var = (q * log_px_z**2).sum(0) - expected**2
    return log_px, expected - kl, var


@pytest.fixture(scope="module")
def trained_gumbel():
    keras.utils.set_random_seed(0)
    vae = gumbel_vae()
    before = [w.numpy().copy() for w in vae.trainable_weights]
    hist = vae.fit(X, batch_size=64, epochs=5, verbose=0).history
    return vae, before, hist


def test_gumbel_fit_under_xla(trained_gumbel):
    vae, before, hist = trained_gumbel
    assert vae.jit_compile
    assert np.isfinite(hist["loss"]).all()
    assert hist["loss"][-1] < hist["loss"][0]
    assert all(not np.allclose(a, w.numpy())
               for a, w in zip(before, vae.trainable_weights))


def test_gumbel_log_likelihood_matches_enumeration(trained_gumbel):
    vae, _, _ = trained_gumbel
    x = X[:64]
    exact, exact_elbo, _ = _exact(vae, x)
    # The model is not trivial: the states explain x differently.
    assert np.ptp(vae.decode(STATES)) > 1.0
    assert np.all(exact_elbo <= exact + 1e-6)
    assert np.mean(exact - exact_elbo) > 1e-3
    est = vae.log_likelihood(x, num_samples=5000)
    assert np.mean(np.abs(est - exact)) < 0.05, np.abs(est - exact).max()
    assert np.mean(est) <= np.mean(exact) + 0.01
    # The per-example ELBO with many hard draws is the exact ELBO.
    np.testing.assert_allclose(vae.elbo(x, num_samples=2000), exact_elbo,
                               atol=0.1)


def test_gumbel_evaluate_elbo_is_the_discrete_elbo(trained_gumbel):
    vae, _, _ = trained_gumbel
    x = X[:128]
    exact, exact_elbo, var = _exact(vae, x)
    runs = [vae.evaluate(x, batch_size=128, verbose=0, return_dict=True)
            for _ in range(10)]
    elbo = np.mean([r["elbo"] for r in runs])
    # One hard draw per example and run: the standard error of the mean.
    se = np.sqrt(var.sum()) / len(x) / np.sqrt(len(runs))
    assert abs(elbo - exact_elbo.mean()) < 5 * se + 1e-4, (
        elbo, exact_elbo.mean(), se,
    )
    assert elbo <= exact.mean() + 5 * se
    got = runs[0]
    # The KL it reports is the analytic one to the uniform prior.
    logits = np.asarray(vae.encode(x), "float64")
    log_pi = logits - special.logsumexp(logits, -1, keepdims=True)
    kl = (np.exp(log_pi) * log_pi).sum((-1, -2)) + N * np.log(C)
    np.testing.assert_allclose(got["kl"], kl.mean(), rtol=1e-4)


def test_gumbel_iwae_is_refused():
    vae = gumbel_vae()
    with pytest.raises(ValueError, match="objective='iwae'"):
        vae.compile(loss=BernoulliNLL(), objective="iwae", num_samples=4)


def test_gumbel_sample_decodes_uniform_one_hot_prior_draws():
    # Decoder: identity on the flattened one-hot z, so a sample's mean
    # sigmoid(z) names the state drawn.
    decoder = keras.layers.Dense(
        N * C, kernel_initializer="identity", bias_initializer="zeros"
    )
    vae = gumbel_vae(d=N * C, decoder=decoder)
    n = 9000
    samples = vae.sample(n, seed=4).reshape(n, N, C)
    values = np.unique(np.round(samples, 6))
    np.testing.assert_allclose(values, special.expit([0.0, 1.0]), rtol=1e-6)
    hot = np.isclose(samples, special.expit(1.0))
    assert np.all(hot.sum(-1) == 1)  # one class per variable
    state = hot.argmax(-1) @ np.array([C, 1])  # 0 .. 8
    counts = np.bincount(state, minlength=C**N)
    assert stats.chisquare(counts).pvalue > 1e-3, counts
    # Reproducible by seed, different across seeds.
    np.testing.assert_array_equal(vae.sample(50, seed=4), vae.sample(50, seed=4))
    assert not np.array_equal(vae.sample(50, seed=4), vae.sample(50, seed=5))


