"""kl_decomposition: the three terms add up to its KL exactly, each term
against its closed form for a Gaussian aggregate posterior, and bad input."""

import keras
import numpy as np
import pytest

import keras_vae
from keras_vae.disentanglement import kl_decomposition
from keras_vae.losses import GaussianNLL
from tests.objectives.test_beta_tcvae import gumbel_vae, two_level_vae

CHOL = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.3, -0.5, 0.7]])
SIGMA = CHOL @ CHOL.T
S2 = 0.9 * np.linalg.eigvalsh(SIGMA).min()  # the posteriors' variance


def identity_vae(scale):
    """q(z | x) = N(x, scale² I): the encoder is the identity map on 3-D
    x, with a constant scale (the head's kernel zero, bias to match)."""
    x_in = keras.Input((3,))
    head = keras_vae.GaussianEncoderHead(3)
    q = keras_vae.KLRegularizer()(head(x_in))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(3)(z))
    head.loc_dense.kernel.assign(np.eye(3, dtype="float32"))
    head.loc_dense.bias.assign(np.zeros(3, "float32"))
    head.scale_dense.kernel.assign(np.zeros((3, 3), "float32"))
    head.scale_dense.bias.assign(
        np.asarray(head.raw_scale_params(np.full(3, scale, "float32"))))
    vae.compile(loss=GaussianNLL(), jit_compile=False)
    return vae


def gaussian_data(n, seed=0):
    """x ~ N(0, Σ - s²I), so q(z) = E_x N(z; x, s²I) = N(0, Σ)."""
    chol = np.linalg.cholesky(SIGMA - S2 * np.eye(3))
    return (np.random.default_rng(seed).normal(size=(n, 3)) @ chol.T).astype(
        "float32")


def closed_forms():
    """The three terms for q(z) = N(0, Σ), q(z | x) = N(x, s²I), p = N(0, I)."""
    logdet = np.linalg.slogdet(SIGMA)[1]
    diag = np.diag(SIGMA)
    return {
        # I(x; z) = h(z) - h(z | x) = ½ log det Σ - ½ Σ_d log s²
        "index_code_mi": 0.5 * (logdet - 3 * np.log(S2)),
        "total_correlation": 0.5 * (np.sum(np.log(diag)) - logdet),
        # Σ_d KL(N(0, Σ_dd) ‖ N(0, 1))
        "dimension_wise_kl": 0.5 * np.sum(diag - 1 - np.log(diag)),
    }


def test_terms_add_up_to_the_kl_exactly_and_match_closed_forms():
    """One batch of all 2,000 examples (MSS, N = 2,000). Errors against
    the closed forms (measured over 3 data sets): MI -0.04 to -0.02, TC
    -0.003 to +0.05, dimension-wise KL +0.005 to +0.009 nats (at 500
    examples: MI about -0.1); tolerance 0.08 nats each. (The data's seed
    differs from the draws': the same stream would make ε equal x's own
    noise.)"""
    vae = identity_vae(np.sqrt(S2))
    x = gaussian_data(2000, seed=10)
    terms = kl_decomposition(vae, x, seed=0)
    parts = (terms["index_code_mi"] + terms["total_correlation"]
             + terms["dimension_wise_kl"])
    assert abs(parts - terms["kl"]) <= 1e-12 * abs(terms["kl"])
    # kl is the Monte Carlo estimate at the same draws; analytic_kl its
    # expectation, by hand from the posteriors.
    loc = x.astype(np.float64)
    analytic = np.mean(0.5 * np.sum(loc**2 + S2 - 1 - np.log(S2), 1))
    np.testing.assert_allclose(terms["analytic_kl"], analytic, rtol=1e-5)
    assert abs(terms["kl"] - analytic) < 0.1
    for name, value in closed_forms().items():
        assert abs(terms[name] - value) < 0.08, (name, terms[name], value)


@pytest.mark.parametrize("kwargs", [
    {"sampling": "mws"},
    {"batch_size": 100, "dataset_size": 5000},
    {"batch_size": 100, "dataset_size": 5000, "sampling": "mws"},
])
def test_terms_add_up_exactly_for_every_estimator(kwargs):
    vae = identity_vae(0.5)
    x = gaussian_data(500, seed=11)
    terms = kl_decomposition(vae, x, seed=3, **kwargs)
    parts = (terms["index_code_mi"] + terms["total_correlation"]
             + terms["dimension_wise_kl"])
    assert abs(parts - terms["kl"]) <= 1e-12 * max(1.0, abs(terms["kl"]))
    # The same draws whatever the estimator: the KL does not change (but
    # for the order of the sums over batches).
    np.testing.assert_allclose(terms["kl"],
                               kl_decomposition(vae, x, seed=3)["kl"],
                               rtol=1e-12)


def test_mws_total_correlation_carries_its_constant():
    """With the whole of x as the batch, MWS weighs every posterior 1/N²
    (MSS about 1/N): its TC is larger by about (L - 1)·log N."""
    vae = identity_vae(np.sqrt(S2))
    x = gaussian_data(1000, seed=12)
    mss = kl_decomposition(vae, x)["total_correlation"]
    mws = kl_decomposition(vae, x, sampling="mws")["total_correlation"]
    np.testing.assert_allclose(mws - mss, 2 * np.log(1000), atol=0.05)


def test_bad_input():
    vae = identity_vae(0.5)
    x = gaussian_data(64)
    with pytest.raises(ValueError, match=r"`dataset_size`.*batch size "
                                         r"\(64\).*dataset_size=10"):
        kl_decomposition(vae, x, dataset_size=10)
    with pytest.raises(ValueError, match=r"`dataset_size`.*dataset_size=20"):
        kl_decomposition(vae, x, dataset_size=20, batch_size=32)
    for bad in (0, -1, 2.5, "64"):
        with pytest.raises(ValueError, match=r"argument `dataset_size`"):
            kl_decomposition(vae, x, dataset_size=bad)
    with pytest.raises(ValueError, match=r"argument `sampling`"):
        kl_decomposition(vae, x, sampling="full")
    for bad in (1, 0, 2.0):
        with pytest.raises(ValueError, match=r"argument `batch_size`"):
            kl_decomposition(vae, x, batch_size=bad)
    with pytest.raises(ValueError, match=r"argument `x`.*at least 2"):
        kl_decomposition(vae, x[:1])


@pytest.mark.parametrize("build, message", [
    (two_level_vae, r"kl_decomposition scores one latent.*2 levels"),
    (gumbel_vae, r"kl_decomposition needs a diagonal Gaussian posterior"),
])
def test_models_it_cannot_decompose_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        kl_decomposition(build(), np.zeros((8, 32), "float32"))
