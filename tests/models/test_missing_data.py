"""Missing data (compile(missing_values=...)), impute, and per-example
refinement, against the closed forms of probabilistic PCA.

```none
x = W z + b + σ ε:   C = W Wᵀ + σ² I
log p(x_obs)             = log N(x_obs; b_obs, C_oo)
E[x_mis | x_obs]         = b_mis + C_mo C_oo⁻¹ (x_obs - b_obs)
```
"""

import keras
import numpy as np
import pytest
from scipy import stats

import keras_vae
from keras_vae.losses import GaussianNLL

D, L, SIGMA = 6, 2, 0.5
NAN = float("nan")


def _ppca(n, seed):
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(7).normal(size=(D, L)).astype("float32")
    b = np.random.default_rng(8).normal(size=D).astype("float32")
    z = rng.normal(size=(n, L))
    x = (z @ w.T + b + SIGMA * rng.normal(size=(n, D))).astype("float32")
    missing = rng.random((n, D)) < 0.3
    missing[:, 0] &= ~missing[:, 1:].all(1)  # keep one entry per row
    return w, b, x, missing


def _closed_forms(w, b, x, missing):
    """log N(x_obs; b_obs, C_oo) and E[x_mis | x_obs], row by row."""
    cov = w @ w.T + SIGMA**2 * np.eye(D)
    log_px, mean = [], x.astype("float64").copy()
    for i, (row, miss) in enumerate(zip(x.astype("float64"), missing)):
        o, m = ~miss, miss
        log_px.append(stats.multivariate_normal(b[o], cov[np.ix_(o, o)])
                      .logpdf(row[o]))
        if m.any():
            gain = cov[np.ix_(m, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
            mean[i, m] = b[m] + gain @ (row[o] - b[o])
    return np.array(log_px), mean


def _linear_vae(full=False, hidden=32, seed=0):
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((D,))
    h = keras.layers.Dense(hidden, activation="tanh")(x_in)
    head = keras_vae.GaussianEncoderHead(
        L, covariance="full" if full else "diag")
    q = keras_vae.KLRegularizer()(head(h))
    z = keras_vae.ReparameterizedSample(seed=seed + 1)(q)
    decoder = keras.layers.Dense(D, name="decoder")
    return keras_vae.VAEModel(x_in, decoder(z)), decoder


@pytest.fixture(scope="module")
def true_decoder_vae():
    """The true PPCA decoder (frozen), an encoder trained on incomplete
    rows with it."""
    w, b, x, missing = _ppca(3000, seed=0)
    vae, decoder = _linear_vae(full=True)
    decoder.set_weights([w.T, b])
    decoder.trainable = False
    vae.compile(optimizer=keras.optimizers.Adam(3e-3),
                loss=GaussianNLL(scale=SIGMA), missing_values=NAN)
    incomplete = np.where(missing, np.nan, x).astype("float32")
    vae.fit(incomplete, batch_size=100, epochs=8, verbose=0)
    _, _, x_test, miss_test = _ppca(200, seed=1)
    return vae, (w, b), x_test, miss_test


def test_log_likelihood_of_incomplete_rows_is_log_p_of_the_observed(
        true_decoder_vae):
    vae, (w, b), x, missing = true_decoder_vae
    exact, _ = _closed_forms(w, b, x, missing)
    incomplete = np.where(missing, np.nan, x)
    # The proposal refined per example is close to p(z | x_obs), a
    # Gaussian: K = 1000 weights then vary little (error ~0.01 nat).
    estimate = vae.log_likelihood(incomplete, num_samples=1000, seed=0,
                                  refine_steps=200)
    assert np.abs(estimate - exact).mean() < 0.02
    assert np.abs(estimate - exact).max() < 0.1
    # Whatever hides behind the mask changes nothing.
    other = np.where(missing, 1e6, x).astype("float32")
    vae.compile(loss=GaussianNLL(scale=SIGMA), missing_values=1e6)
    again = vae.log_likelihood(other, num_samples=1000, seed=0,
                               refine_steps=200)
    np.testing.assert_allclose(again, estimate, rtol=1e-5)
    vae.compile(loss=GaussianNLL(scale=SIGMA), missing_values=NAN)


def test_impute_is_the_gaussian_conditional_mean(true_decoder_vae):
    vae, (w, b), x, missing = true_decoder_vae
    _, exact = _closed_forms(w, b, x, missing)
    incomplete = np.where(missing, np.nan, x).astype("float32")
    filled = vae.impute(incomplete, num_samples=1000, seed=0,
                        refine_steps=200)
    np.testing.assert_array_equal(filled[~missing], x[~missing])
    error = np.abs(filled - exact)[missing]
    # Self-normalised IS, K = 1000, refined proposal: within 0.1 (the
    # data's standard deviation is about 1.5).
    assert error.max() < 0.1, error.max()
    assert error.mean() < 0.02, error.mean()
    draws = vae.impute(incomplete[:50], num_samples=500, seed=0,
                       num_imputations=20, refine_steps=200)
    assert draws.shape == (20, 50, D)
    np.testing.assert_array_equal(draws[:, ~missing[:50]],
                                  np.broadcast_to(x[:50][~missing[:50]],
                                                  (20, (~missing[:50]).sum())))
    # Draws of p(x_mis | x_obs): their mean is near the conditional mean.
    spread = np.abs(draws.mean(0) - exact[:50])[missing[:50]]
    assert spread.mean() < 0.35


def test_linear_vae_trained_on_incomplete_data_recovers_the_model():
    """MIWAE (IWAE on incomplete data), K = 5."""
    w, b, x, missing = _ppca(4000, seed=2)
    vae, _ = _linear_vae(seed=3)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss=GaussianNLL(scale=SIGMA), missing_values=NAN,
                objective=keras_vae.objectives.IWAE(num_samples=5))
    vae.fit(np.where(missing, np.nan, x), batch_size=200, epochs=40,
            verbose=0)
    _, _, x_test, miss_test = _ppca(300, seed=4)
    exact, _ = _closed_forms(w, b, x_test, miss_test)
    learned = vae.log_likelihood(np.where(miss_test, np.nan, x_test),
                                 num_samples=500, seed=0, refine_steps=200)
    assert abs(learned.mean() - exact.mean()) < 0.1, (learned.mean(),
                                                      exact.mean())


def test_refined_elbo_reaches_log_p_x_with_an_untrained_full_encoder():
    w, b, x, _ = _ppca(100, seed=5)
    vae, decoder = _linear_vae(full=True, seed=6)
    decoder.set_weights([w.T, b])
    vae.compile(loss=GaussianNLL(scale=SIGMA))
    weights = [a.copy() for a in vae.get_weights()]
    exact = stats.multivariate_normal(
        b, w @ w.T + SIGMA**2 * np.eye(D)).logpdf(x)
    amortized = vae.elbo(x, num_samples=200, seed=0)
    refined = vae.elbo(x, num_samples=200, seed=0, refine_steps=300,
                       refine_learning_rate=0.05)
    assert amortized.mean() < exact.mean() - 1.0  # an untrained encoder
    assert abs(refined.mean() - exact.mean()) < 0.05, (refined.mean(),
                                                       exact.mean())
    for before, after in zip(weights, vae.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_refined_elbo_stays_below_log_p_x_on_a_nonlinear_model():
    from tests.builders import binary_data, mlp_vae

    data = binary_data(600)
    vae = mlp_vae(d=32, latent=2)
    vae.compile(loss=keras_vae.losses.BernoulliNLL())
    vae.fit(data, batch_size=100, epochs=5, verbose=0)
    gaps = keras_vae.evaluate.amortization_gap(
        vae, data[:100], refine_steps=100, num_samples=500, elbo_samples=50)
    assert gaps["refined_elbo"] > gaps["elbo"]
    assert gaps["refined_elbo"] <= gaps["log_likelihood"] + 0.02
    assert gaps["total_gap"] == pytest.approx(
        gaps["approximation_gap"] + gaps["amortization_gap"], abs=1e-4)


def test_the_setting_saves_with_the_model(tmp_path):
    vae, _ = _linear_vae()
    vae.compile(loss=GaussianNLL(scale=SIGMA), missing_values=NAN)
    vae.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert np.isnan(loaded.missing_values)


def test_nan_without_missing_values_and_bad_settings_are_clear_errors():
    vae, _ = _linear_vae()
    vae.compile(loss=GaussianNLL(scale=SIGMA))
    data = np.ones((10, D), "float32")
    data[0, 0] = np.nan
    for call in (lambda: vae.fit(data, verbose=0),
                 lambda: vae.log_likelihood(data),
                 lambda: vae.elbo(data)):
        with pytest.raises(ValueError, match="missing_values=float"):
            call()
    with pytest.raises(ValueError, match="compiled without `missing_values`"):
        vae.impute(data)
    with pytest.raises(ValueError, match="missing_values"):
        vae.compile(loss=GaussianNLL(), missing_values="nan")
    with pytest.raises(ValueError, match="refine_steps"):
        vae.elbo(np.ones((4, D), "float32"), refine_steps=-1)
    categorical = keras.Input((D,))
    logits = keras_vae.KLRegularizer()(
        keras_vae.GumbelSoftmaxHead(1, 3)(categorical))
    z = keras.layers.Flatten()(keras_vae.CategoricalSample()(logits))
    cat_vae = keras_vae.VAEModel(categorical, keras.layers.Dense(D)(z))
    cat_vae.compile(loss=GaussianNLL(scale=SIGMA))
    with pytest.raises(ValueError, match="refine_steps > 0 refines Gaussian"):
        cat_vae.elbo(np.ones((4, D), "float32"), refine_steps=5)
