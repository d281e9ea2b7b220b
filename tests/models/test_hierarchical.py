"""Two stochastic layers, checked on a linear-Gaussian hierarchy.

```none
z2 ~ N(0, I),  z1 | z2 ~ N(A z2 + a, S1),  x | z1 ~ N(W z1 + b, s^2 I)
log p(x)       = log N(x; W a + b, W (A A^T + S1) W^T + s^2 I)
p(z2 | x)      = N(P2 B^T R^-1 (x - c), P2),   B = W A, c = W a + b,
                 R = W S1 W^T + s^2 I, P2 = (I + B^T R^-1 B)^-1
p(z1 | x, z2)  = N(P1 (S1^-1 (A z2 + a) + W^T (x - b) / s^2), P1),
                 P1 = (S1^-1 + W^T W / s^2)^-1
```

The exact posterior factorises as the top-down inference network does,
q(z2 | x) q(z1 | x, z2), and both factors are linear-Gaussian, so the
encoder heads can be set to it: then every importance weight equals p(x)
and the one-sample estimate is exact. This checks the whole multi-level
path: the stage order, the prior p(z1 | z2) computed by the model, the
K-fold tiling of the second level, the per-level KLs and log-densities.
"""


import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import keras_vae
from keras_vae.losses import GaussianNLL

tfd = tfp.distributions

D, L1, L2, SIGMA = 4, 2, 1, 0.4


@pytest.fixture(scope="module")
def model_params():
    rng = np.random.default_rng(7)
    A = rng.normal(size=(L1, L2))
    a = rng.normal(size=(L1,))
    s1 = np.array([0.5, 0.8])
    W = rng.normal(size=(D, L1))
    b = rng.normal(size=(D,))
    S1 = np.diag(s1**2)
    z2 = rng.normal(size=(200, L2))
    z1 = z2 @ A.T + a + rng.normal(size=(200, L1)) * s1
    x = z1 @ W.T + b + SIGMA * rng.normal(size=(200, D))
    cov = W @ (A @ A.T + S1) @ W.T + SIGMA**2 * np.eye(D)
    exact = tfd.MultivariateNormalTriL(
        W @ a + b, np.linalg.cholesky(cov)
    ).log_prob(x).numpy()
    B, c = W @ A, W @ a + b
    R_inv = np.linalg.inv(W @ S1 @ W.T + SIGMA**2 * np.eye(D))
    P2 = np.linalg.inv(np.eye(L2) + B.T @ R_inv @ B)
    G2 = P2 @ B.T @ R_inv                       # m2 = G2 (x - c)
    P1 = np.linalg.inv(np.linalg.inv(S1) + W.T @ W / SIGMA**2)
    Gx = P1 @ W.T / SIGMA**2                    # m1 = Gx x + Gz z2 + g1
    Gz = P1 @ np.linalg.inv(S1) @ A
    g1 = P1 @ (np.linalg.inv(S1) @ a - W.T @ b / SIGMA**2)
    return dict(A=A, a=a, s1=s1, W=W, b=b, x=x.astype("float32"),
                exact=exact, G2=G2, g2=-G2 @ c, P2=P2, Gx=Gx, Gz=Gz, g1=g1,
                P1=P1, marginal_mean=W @ a + b,
                marginal_cov=W @ (A @ A.T + S1) @ W.T)


def _set_head(head, kernel, bias, chol):
    f32 = lambda t: np.asarray(t, "float32")  # noqa: E731
    head.loc_dense.set_weights([f32(kernel), f32(bias)])
    raw = head.raw_scale_params(f32(chol)).numpy()
    n_in = head.scale_dense.kernel.shape[0]
    head.scale_dense.set_weights(
        [np.zeros((n_in, raw.shape[-1]), "float32"), f32(raw)]
    )


def build(p, loc_shift=0.0, seed=0):
    """The hierarchy's VAEModel; the encoder is exact when loc_shift = 0."""
    x_in = keras.Input((D,), name="x")
    q2_head = keras_vae.GaussianEncoderHead(L2, covariance="full",
                                            min_scale=1e-6, name="q_z2")
    q2 = keras_vae.KLRegularizer(name="kl_z2")(q2_head(x_in))
    z2 = keras_vae.ReparameterizedSample(seed=seed, name="z2")(q2)
    p1_head = keras_vae.GaussianEncoderHead(L1, min_scale=1e-6, name="p_z1")
    p1 = p1_head(z2)
    q1_head = keras_vae.GaussianEncoderHead(L1, covariance="full",
                                            min_scale=1e-6, name="q_z1")
    q1 = q1_head(keras.layers.Concatenate()([x_in, z2]))
    q1 = keras_vae.KLRegularizer(name="kl_z1")([q1, p1])
    z1 = keras_vae.ReparameterizedSample(seed=seed + 1, name="z1")(q1)
    decoder = keras.layers.Dense(D, name="decoder")
    vae = keras_vae.VAEModel(x_in, decoder(z1), name="two_level")
    vae.compile(loss=GaussianNLL(scale=SIGMA))

    _set_head(q2_head, p["G2"].T, p["g2"] + loc_shift,
              np.linalg.cholesky(p["P2"]))
    _set_head(q1_head, np.concatenate([p["Gx"].T, p["Gz"].T]),
              p["g1"] + loc_shift, np.linalg.cholesky(p["P1"]))
    p1_head.loc_dense.set_weights([p["A"].T.astype("float32"),
                                   p["a"].astype("float32")])
    raw = p1_head.raw_scale_params(p["s1"].astype("float32")).numpy()
    p1_head.scale_dense.set_weights([np.zeros((L2, L1), "float32"), raw])
    decoder.set_weights([p["W"].T.astype("float32"),
                         p["b"].astype("float32")])
    return vae


def test_levels_are_found_in_sampling_order(model_params):
    vae = build(model_params)
    assert [level.name for level in vae.levels] == ["z2", "z1"]
    z2, z1 = vae.levels
    assert z2.z_deps == () and z1.z_deps == (0,)
    assert z1.num_prior_params == 2 and z1.prior_model is not None
    assert [m.name for m in vae.metrics] == [
        "loss", "elbo", "reconstruction", "kl", "kl_z2", "kl_z1"]


def test_exact_posterior_gives_the_exact_log_likelihood(model_params):
    p = model_params
    vae = build(p)
    # Zero-variance importance sampling: one sample is exact for each x.
    one = vae.log_likelihood(p["x"], num_samples=1)
    np.testing.assert_allclose(one, p["exact"], rtol=0, atol=5e-4)
    # The ELBO (analytic KL at each level, given z2) equals log p(x) up to
    # the Monte Carlo error of E_q[log p(x|z1) - KL_1(z2)], small at K=500.
    elbo = vae.elbo(p["x"][:50], num_samples=500)
    assert abs(np.mean(elbo - p["exact"][:50])) < 0.03
    np.testing.assert_allclose(elbo, p["exact"][:50], atol=0.3)


def test_per_level_kl_metrics_add_up(model_params):
    vae = build(model_params)
    result = vae.evaluate(model_params["x"], batch_size=50, verbose=0,
                          return_dict=True)
    np.testing.assert_allclose(result["kl"], result["kl_z1"] + result["kl_z2"],
                               rtol=1e-5)
    assert result["kl_z1"] > 0.05 and result["kl_z2"] > 0.05
    np.testing.assert_allclose(
        result["elbo"], -(result["reconstruction"] + result["kl"]), rtol=1e-5)


@pytest.mark.slow
def test_wrong_posterior_orders_the_bounds(model_params):
    p = model_params
    vae = build(p, loc_shift=0.3)
    x, exact = p["x"][:100], p["exact"][:100]
    elbo = np.mean(vae.elbo(x, num_samples=200))
    iwae = [np.mean(vae.log_likelihood(x, num_samples=k)) for k in (5, 50)]
    ll = vae.log_likelihood(x, num_samples=2000)
    assert elbo < iwae[0] < iwae[1] < np.mean(exact) + 0.01, (elbo, iwae)
    assert np.mean(exact) - elbo > 0.1
    # log p(x) by importance sampling, K = 2000: within 4 standard errors
    # of the exact value over these 100 examples (about 0.013 nats).
    diff = ll - exact
    assert abs(np.mean(diff)) < 4 * np.std(diff) / np.sqrt(len(diff))


def test_ancestral_samples_have_the_model_marginal(model_params):
    p = model_params
    vae = build(p)
    # sample() returns the decoder mean W z1 + b with z1 drawn ancestrally:
    # z2 ~ N(0, I), z1 ~ p(z1 | z2); its moments are W a + b and
    # W (A A^T + S1) W^T.
    means = vae.sample(40_000, seed=3).astype("float64")
    se = np.sqrt(np.diag(p["marginal_cov"]) / len(means))
    np.testing.assert_array_less(np.abs(means.mean(0) - p["marginal_mean"]),
                                 5 * se)
    np.testing.assert_allclose(np.cov(means.T), p["marginal_cov"],
                               atol=0.05 * np.abs(p["marginal_cov"]).max())
    # Without the p(z1 | z2) step (z1 from its prior mean) the covariance
    # would be W A A^T W^T: check the S1 part is there.
    assert np.trace(np.cov(means.T)) > np.trace(
        p["W"] @ p["A"] @ p["A"].T @ p["W"].T) + 0.5 * np.trace(
        p["W"] @ np.diag(p["s1"] ** 2) @ p["W"].T)
    np.testing.assert_array_equal(vae.sample(5, seed=3), vae.sample(5, seed=3))
    assert not np.array_equal(vae.sample(5, seed=3), vae.sample(5, seed=4))


def test_trains_under_xla(model_params):
    p = model_params
    vae = build(p, loc_shift=0.3)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss=GaussianNLL(scale=SIGMA), objective="iwae", num_samples=4)
    assert vae.jit_compile
    before = np.mean(vae.log_likelihood(p["x"], num_samples=200))
    history = vae.fit(p["x"], batch_size=50, epochs=8, verbose=0)
    assert set(history.history) >= {"kl_z1", "kl_z2"}
    after = np.mean(vae.log_likelihood(p["x"], num_samples=200))
    assert after > before
    # Save/load and export of a two-level model: the model harness
    # (tests/model_harness.py, "two_level").
    enc = vae.encode(p["x"][:6])
    assert len(enc) == 2 and [l.name for l in vae.levels] == ["z2", "z1"]


def test_conditional_prior_from_a_label():
    # p(z | y) = N(3 y, I) computed by the model from the label y;
    # sample(condition=y) draws from it, and the decoder is the identity.
    x_in, y_in = keras.Input((2,), name="x"), keras.Input((2,), name="y")
    h = keras.layers.Dense(8, activation="tanh")(
        keras.layers.Concatenate()([x_in, y_in]))
    q = keras_vae.GaussianEncoderHead(2)(h)
    prior_head = keras_vae.GaussianEncoderHead(2, name="prior_of_y")
    q = keras_vae.KLRegularizer()([q, prior_head(y_in)])
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    decoder = keras.layers.Dense(2, name="identity")
    vae = keras_vae.VAEModel([x_in, y_in], decoder(z))
    vae.compile(loss=GaussianNLL(scale=1.0))
    prior_head.loc_dense.set_weights([3 * np.eye(2, dtype="float32"),
                                      np.zeros(2, "float32")])
    raw = prior_head.raw_scale_params(np.ones(2, "float32")).numpy()
    prior_head.scale_dense.set_weights([np.zeros((2, 2), "float32"), raw])
    decoder.set_weights([np.eye(2, dtype="float32"), np.zeros(2, "float32")])
    assert vae.levels[0].prior_input_index == (1,)
    assert vae.graph.condition_index == (1,)

    y = np.array([[1.0, -2.0]], "float32")
    draws = vae.sample(20_000, seed=0, condition=y)
    np.testing.assert_allclose(draws.mean(0), 3 * y[0], atol=0.05)
    np.testing.assert_allclose(draws.std(0), [1.0, 1.0], atol=0.03)
    # The KL term uses p(z | y) per example: equal to TFP's for those rows.
    x = np.random.default_rng(0).normal(size=(5, 2)).astype("float32")
    ys = np.random.default_rng(1).normal(size=(5, 2)).astype("float32")
    terms = vae.trace([x, ys], x, num_samples=3)
    loc, scale = vae.encode([x, ys])
    want = tfd.kl_divergence(tfd.MultivariateNormalDiag(loc, scale),
                             tfd.MultivariateNormalDiag(3 * ys, np.ones_like(ys)))
    np.testing.assert_allclose(terms.kl, want, rtol=1e-4, atol=1e-5)
    history = vae.fit([x, ys], x, batch_size=5, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_condition_is_checked_and_one_row_broadcasts():
    x_in, y_in = keras.Input((3,), name="x"), keras.Input((4,), name="label")
    h = keras.layers.Concatenate()([x_in, y_in])
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(h))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    out = keras.layers.Dense(3)(keras.layers.Concatenate()([z, y_in]))
    vae = keras_vae.VAEModel([x_in, y_in], out)
    vae.compile(loss=GaussianNLL())
    one_hot = np.eye(4, dtype="float32")[2]
    a = vae.sample(5, seed=1, condition=one_hot)          # one row, no batch axis
    b = vae.sample(5, seed=1, condition=[one_hot[None]])  # a list of one array
    c = vae.sample(5, seed=1, condition=np.tile(one_hot, (5, 1)))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    for bad in ([3], np.zeros((3, 4)), np.zeros((5, 2))):
        with pytest.raises(ValueError, match=r"argument `condition`.*'label'"):
            vae.sample(5, condition=bad)
    with pytest.raises(ValueError, match="pass `condition=`"):
        vae.sample(5)
