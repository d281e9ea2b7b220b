"""β-TCVAE: the minibatch estimators of the aggregate posterior against a
direct re-implementation and a closed form, the loss on a trace, training
under XLA, saving, and the inputs it refuses."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae import objectives
from keras_vae.losses import BernoulliNLL
from keras_vae.objectives.beta_tcvae import log_importance_weights
from tests.builders import binary_data, mlp_vae

X = binary_data(256, d=32, seed=2)
# A correlated Gaussian: TC = ½(Σ_i log Σ_ii - log det Σ) = 0.7743 nats.
CHOL = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.3, -0.5, 0.7]])
SIGMA = CHOL @ CHOL.T
TC_CLOSED = 0.5 * (np.sum(np.log(np.diag(SIGMA)))
                   - np.linalg.slogdet(SIGMA)[1])


# ----------------------------------------------- models the objectives refuse
def two_level_vae():
    x_in = keras.Input((32,))
    h = keras.layers.Dense(8, activation="relu")(x_in)
    z2 = keras_vae.ReparameterizedSample(seed=0)(
        keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(h)))
    h1 = keras.layers.Concatenate()([h, z2])
    z1 = keras_vae.ReparameterizedSample(seed=1)(
        keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(h1)))
    return keras_vae.VAEModel(x_in, keras.layers.Dense(32)(z1))


def gumbel_vae():
    x_in = keras.Input((32,))
    h = keras.layers.Dense(8, activation="relu")(x_in)
    logits = keras_vae.KLRegularizer()(keras_vae.GumbelSoftmaxHead(2, 3)(h))
    z = keras_vae.GumbelSoftmaxSample(temperature=0.5, seed=0)(logits)
    return keras_vae.VAEModel(
        x_in, keras.layers.Dense(32)(keras.layers.Flatten()(z)))


def iaf_vae():
    x_in = keras.Input((32,))
    h = keras.layers.Dense(8, activation="relu")(x_in)
    loc, scale = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(h))
    z = keras_vae.IAFSample(num_flows=1, hidden_units=(4,), seed=0)(
        [loc, scale, h])
    return keras_vae.VAEModel(x_in, keras.layers.Dense(32)(z))


def spatial_vae():
    x_in = keras.Input((2, 2, 3))
    q = keras_vae.KLRegularizer()(
        keras_vae.GaussianEncoderHead(2, flatten=False)(x_in))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    return keras_vae.VAEModel(x_in, keras.layers.Dense(3)(z))


# ------------------------------------------------------------- the estimator
def direct_decomposition(z, loc, scale, n, sampling):
    """The paper's estimators written out with loops, in float64."""
    b, dim = loc.shape
    m = b - 1
    dens = np.exp(-0.5 * ((z[:, None, :] - loc[None]) / scale[None]) ** 2) / (
        np.sqrt(2 * np.pi) * scale[None])                     # (i, j, d)
    mi, tc, dwkl = (np.zeros(b) for _ in range(3))
    for i in range(b):
        w = np.zeros(b)
        for j in range(b):
            if sampling == "mws":
                w[j] = 1.0 / (n * b)
            elif j == i:
                w[j] = 1.0 / n
            elif j == (i + 1) % b:
                w[j] = (n - m) / (n * m)
            else:
                w[j] = 1.0 / m
        q_joint = np.log(np.sum(w * np.prod(dens[i], axis=1)))
        q_marg = np.sum(np.log(w @ dens[i]))
        q_own = np.sum(np.log(dens[i, i]))
        p = np.sum(-0.5 * z[i] ** 2 - 0.5 * np.log(2 * np.pi))
        mi[i], tc[i], dwkl[i] = q_own - q_joint, q_joint - q_marg, q_marg - p
    return mi, tc, dwkl


@pytest.mark.parametrize("sampling", ["mss", "mws"])
def test_estimator_matches_the_papers_formulas(sampling):
    rng = np.random.default_rng(0)
    loc = rng.normal(size=(6, 3))
    scale = rng.uniform(0.3, 1.5, size=(6, 3))
    z = loc + scale * rng.normal(size=(6, 3))
    got = objectives.tc_decomposition(z, loc, scale, 50, sampling)
    want = direct_decomposition(z, loc, scale, 50, sampling)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)
    # The three add up to the sampled KL log q(z|x) - log p(z), exactly.
    log_q = np.sum(-0.5 * ((z - loc) / scale) ** 2 - np.log(scale)
                   - 0.5 * np.log(2 * np.pi), 1)
    log_p = np.sum(-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi), 1)
    np.testing.assert_allclose(sum(np.asarray(t) for t in got),
                               log_q - log_p, rtol=1e-12, atol=1e-12)


def test_importance_weights_sum_to_one_for_mss_and_one_over_n_for_mws():
    w = np.exp(log_importance_weights(5, 40, "mss", tf.float64).numpy())
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.diag(w), 1 / 40)
    np.testing.assert_allclose(w[0], [1 / 40, 36 / 160, 1 / 4, 1 / 4, 1 / 4])
    w = np.exp(log_importance_weights(5, 40, "mws", tf.float64).numpy())
    np.testing.assert_allclose(w.sum(1), 1 / 40, rtol=1e-12)


def _gaussian_batch(rng, batch, posterior_var):
    """Posteriors N(loc_i, s²I), loc_i ~ N(0, Σ - s²I): the aggregate
    posterior of an unlimited dataset is exactly N(0, Σ)."""
    chol = np.linalg.cholesky(SIGMA - posterior_var * np.eye(3))
    loc = rng.normal(size=(batch, 3)) @ chol.T
    scale = np.full((batch, 3), np.sqrt(posterior_var))
    return loc + scale * rng.normal(size=(batch, 3)), loc, scale


def test_total_correlation_converges_to_the_gaussian_closed_form():
    """MSS's batch TC -> ½(Σ log Σ_ii - log det Σ) as the batch grows.

    Measured (mean of 6 batches, N = 1e9): batch 64 -0.22 nats off,
    256 -0.05, 1024 -0.01. Tolerance at 1024: 0.05 nats (6%). MWS
    converges to the same plus (L - 1)·log N, its constant bias."""
    rng = np.random.default_rng(0)
    var = 0.9 * np.linalg.eigvalsh(SIGMA).min()
    n = 10**9
    errors = {}
    for sampling in ("mss", "mws"):
        for batch in (64, 256, 1024):
            tcs = []
            for _ in range(6):
                z, loc, scale = _gaussian_batch(rng, batch, var)
                tc = objectives.tc_decomposition(z, loc, scale, n, sampling)[1]
                tcs.append(np.mean(tc))
            bias = 2 * math.log(n) if sampling == "mws" else 0.0
            errors[sampling, batch] = np.mean(tcs) - bias - TC_CLOSED
    mss = [abs(errors["mss", b]) for b in (64, 256, 1024)]
    assert mss[0] > mss[1] > mss[2], errors
    assert mss[2] < 0.05, errors
    assert abs(errors["mws", 1024]) < 0.05, errors


def test_independent_latents_have_no_total_correlation():
    rng = np.random.default_rng(1)
    loc = rng.normal(size=(1024, 3)) * np.sqrt([0.5, 1.0, 2.0])
    scale = np.full_like(loc, 0.5)
    z = loc + scale * rng.normal(size=loc.shape)
    tc = objectives.tc_decomposition(z, loc, scale, 10**9, "mss")[1]
    assert abs(np.mean(tc)) < 0.03


# ------------------------------------------------------------ the objective
def test_loss_on_a_trace_is_the_decomposition_with_its_weights():
    vae = mlp_vae(latent=3)
    obj = objectives.BetaTCVAE(beta=5.0, dataset_size=1000, alpha=0.5,
                               gamma=2.0, num_samples=2)
    vae.compile(loss=BernoulliNLL(), objective=obj)
    t = vae.trace(X[:40], X[:40], num_samples=2, seed=tf.constant([1, 2]))
    loc, scale = (np.asarray(p, np.float64) for p in t.levels[0].params)
    z = np.asarray(t.unfolded_z(0), np.float64)
    terms = [np.mean([d[k] for d in [direct_decomposition(
        z[s], loc, scale, 1000, "mss") for s in range(2)]], 0)
        for k in range(3)]
    mi, tc, dwkl = terms
    kl = 0.5 * np.sum(loc**2 + scale**2 - 1 - 2 * np.log(scale), 1)
    recon = np.asarray(t.reconstruction)
    want = np.mean(recon + kl - 0.5 * mi + 4.0 * tc + 1.0 * dwkl)
    loss, metrics = obj(t)
    np.testing.assert_allclose(loss, want, rtol=1e-4)
    np.testing.assert_allclose(obj.compute(t)[0], want, rtol=1e-4)
    np.testing.assert_allclose(metrics["total_correlation"], tc.mean(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(metrics["mutual_information"], mi.mean(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(metrics["dimension_wise_kl"], dwkl.mean(),
                               rtol=1e-4, atol=1e-5)
    # α = β = γ = 1 is the ELBO, value and gradient.
    one = objectives.BetaTCVAE(beta=1.0, dataset_size=1000, num_samples=2)
    np.testing.assert_allclose(one.compute(t)[0], objectives.ELBO(2).compute(t)[0],
                               rtol=1e-6)


def test_trains_under_xla_and_reports_its_terms():
    vae = mlp_vae(latent=3, seed=1)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL(),
                objective=objectives.BetaTCVAE(beta=4.0, dataset_size=len(X)))
    assert vae.jit_compile
    hist = vae.fit(X, batch_size=64, epochs=3, verbose=0).history
    for name in ("mutual_information", "total_correlation",
                 "dimension_wise_kl"):
        assert np.all(np.isfinite(hist[name])), name
    assert hist["loss"][-1] < hist["loss"][0]


def test_config_round_trip():
    obj = objectives.BetaTCVAE(beta=3.0, dataset_size=737280,
                               sampling="mws", alpha=0.5, gamma=2.0,
                               num_samples=2)
    config = obj.get_config()
    assert config == {"num_samples": 2, "beta": 3.0, "dataset_size": 737280,
                      "sampling": "mws", "alpha": 0.5, "gamma": 2.0}
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(obj))
    assert type(again) is objectives.BetaTCVAE
    assert again.get_config() == config


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [None, 0, -5, 2.5, True, "1000"])
def test_dataset_size_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match=r"argument `dataset_size`"):
        objectives.BetaTCVAE(dataset_size=bad)
    with pytest.raises(ValueError, match=r"argument `dataset_size`"):
        objectives.tc_decomposition(np.zeros((4, 2)), np.zeros((4, 2)),
                                    np.ones((4, 2)), bad)


def test_dataset_size_smaller_than_the_batch_is_refused():
    with pytest.raises(ValueError, match=r"`dataset_size`.*batch size \(8\)"
                                         r".*dataset_size=4"):
        objectives.tc_decomposition(np.zeros((8, 2)), np.zeros((8, 2)),
                                    np.ones((8, 2)), 4)
    vae = mlp_vae(latent=2)
    vae.compile(loss=BernoulliNLL(),
                objective=objectives.BetaTCVAE(dataset_size=16))
    with pytest.raises(ValueError, match=r"`dataset_size`.*dataset_size=16"):
        vae.compute_objective(X[:32])
    # A pipeline with a static batch size: refused when the step is traced.
    data = tf.data.Dataset.from_tensor_slices(X[:64]).batch(
        32, drop_remainder=True)
    with pytest.raises(ValueError, match=r"`dataset_size`"):
        vae.fit(data, epochs=1, verbose=0)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match=r"argument `sampling`.*'iwae'"):
        objectives.BetaTCVAE(dataset_size=10, sampling="iwae")
    with pytest.raises(ValueError, match=r"argument `sampling`"):
        objectives.tc_decomposition(np.zeros((4, 2)), np.zeros((4, 2)),
                                    np.ones((4, 2)), 10, sampling="mc")
    for name in ("beta", "alpha", "gamma"):
        with pytest.raises(ValueError, match=rf"argument `{name}`"):
            objectives.BetaTCVAE(dataset_size=10, **{name: -1.0})


@pytest.mark.parametrize("build, message", [
    (two_level_vae, r"BetaTCVAE scores one latent.*2 levels"),
    (gumbel_vae, r"diagonal Gaussian posterior.*GumbelSoftmaxSample"),
    (iaf_vae, r"diagonal Gaussian posterior.*IAFSample"),
    (spatial_vae, r"flat latent z of shape \(batch, L\)"),
    (lambda: mlp_vae(covariance="full"),
     r"diagonal Gaussian.*with a full covariance"),
])
def test_compile_refuses_models_it_cannot_score(build, message):
    vae = build()
    with pytest.raises(ValueError, match=message):
        vae.compile(loss=BernoulliNLL(),
                    objective=objectives.BetaTCVAE(dataset_size=100))


def test_compile_refuses_free_bits():
    x_in = keras.Input((32,))
    q = keras_vae.KLRegularizer(free_bits=0.5)(
        keras_vae.GaussianEncoderHead(2)(x_in))
    vae = keras_vae.VAEModel(
        x_in, keras.layers.Dense(32)(keras_vae.ReparameterizedSample()(q)))
    with pytest.raises(ValueError, match=r"free bits or KL capacity"):
        vae.compile(loss=BernoulliNLL(),
                    objective=objectives.BetaTCVAE(dataset_size=100))
