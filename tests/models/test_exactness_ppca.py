"""log p(x) = ELBO + KL(q || p(z|x)), checked on probabilistic PCA.

PPCA (Tipping & Bishop 1999) is a VAE with a linear-Gaussian decoder whose
marginal likelihood and posterior are known in closed form:

```none
z ~ N(0, I_L),  x | z ~ N(W z + b, s^2 I_D)
log p(x)  = log N(x; b, W W^T + s^2 I)
p(z | x)  = N(M^-1 W^T (x - b), s^2 M^-1),   M = W^T W + s^2 I
```

With the exact posterior in the encoder, every importance weight equals
p(x): the one-sample estimate is exact and the ELBO gap is zero. With a
wrong posterior, ELBO < IWAE_K (increasing in K) -> log p(x).
"""

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp

import keras_vae
from keras_vae.losses import GaussianNLL

tfd = tfp.distributions
tfb = tfp.bijectors

D, L, SIGMA = 5, 2, 0.5


@pytest.fixture(scope="module")
def ppca():
    rng = np.random.default_rng(42)
    w = rng.normal(size=(D, L)).astype("float32")
    b = rng.normal(size=(D,)).astype("float32")
    z = rng.normal(size=(300, L)).astype("float32")
    x = (z @ w.T + b + SIGMA * rng.normal(size=(300, D))).astype("float32")
    cov = w @ w.T + SIGMA**2 * np.eye(D)
    exact = tfd.MultivariateNormalTriL(
        b.astype("float64"), np.linalg.cholesky(cov).astype("float64")
    ).log_prob(x.astype("float64"))
    m = w.T @ w + SIGMA**2 * np.eye(L)
    m_inv = np.linalg.inv(m)
    post_map = m_inv @ w.T                       # loc = post_map (x - b)
    post_chol = np.linalg.cholesky(SIGMA**2 * m_inv)
    return dict(w=w, b=b, x=x, exact=exact.numpy(), post_map=post_map,
                post_chol=post_chol.astype("float32"))


def build(p, loc_shift=0.0, scale_factor=1.0, seed=0):
    """A VAEModel with the PPCA decoder and a (possibly wrong) posterior."""
    x_in = keras.Input((D,))
    head = keras_vae.GaussianEncoderHead(L, covariance="full", min_scale=1e-6)
    q = keras_vae.KLRegularizer()(head(x_in))
    z = keras_vae.ReparameterizedSample(seed=seed)(q)
    decoder = keras.layers.Dense(D)
    vae = keras_vae.VAEModel(x_in, decoder(z))
    vae.compile(loss=GaussianNLL(scale=SIGMA))
    a = p["post_map"]
    head.loc_dense.set_weights(
        [a.T.astype("float32"), (-a @ p["b"] + loc_shift).astype("float32")])
    raw = head.raw_scale_params(scale_factor * p["post_chol"]).numpy()
    head.scale_dense.set_weights(
        [np.zeros((D, raw.shape[-1]), "float32"), raw.astype("float32")])
    decoder.set_weights([p["w"].T, p["b"]])
    return vae


def test_exact_posterior_closes_the_gap(ppca):
    vae = build(ppca)
    loc, scale = vae.encode(ppca["x"][:3])
    np.testing.assert_allclose(scale[0], ppca["post_chol"], rtol=1e-5, atol=1e-6)
    # Zero-variance importance sampling: one sample is exact for each x.
    one = vae.log_likelihood(ppca["x"], num_samples=1)
    np.testing.assert_allclose(one, ppca["exact"], rtol=0, atol=2e-4)
    # ELBO with analytic KL: the gap is zero; what remains is Monte Carlo
    # error of E_q[log p(x|z)]: std(log p(x|z)) / sqrt(K) ~ 0.03 nats per
    # example at K = 2000, ~ 0.005 for the mean over 50 examples.
    elbo = vae.elbo(ppca["x"][:50], num_samples=2000)
    np.testing.assert_allclose(elbo, ppca["exact"][:50], atol=0.2)
    assert abs(np.mean(elbo - ppca["exact"][:50])) < 0.03


@pytest.mark.slow
def test_wrong_posterior_orders_elbo_iwae_and_log_likelihood(ppca):
    vae = build(ppca, loc_shift=0.1, scale_factor=1.3)
    x, exact = ppca["x"], ppca["exact"]
    elbo = vae.elbo(x, num_samples=200)
    iwae = {k: vae.log_likelihood(x, num_samples=k) for k in (1, 5, 50)}
    ll = vae.log_likelihood(x, num_samples=1000)
    gap = np.mean(exact - elbo)
    assert gap > 0.1, gap                   # the ELBO is strictly below
    # IWAE_1 is an unbiased estimate of the ELBO (sampled KL): equal means
    # within 4 standard errors.
    diff = iwae[1] - elbo
    assert abs(np.mean(diff)) < 4 * np.std(diff) / np.sqrt(len(diff))
    means = [np.mean(iwae[k]) for k in (1, 5, 50)]
    assert means[0] < means[1] < means[2] < np.mean(exact) + 0.01, means
    # K = 1000 importance samples: within 0.02 nats per example on average,
    # 0.1 for each example.
    assert abs(np.mean(ll - exact)) < 0.02
    np.testing.assert_allclose(ll, exact, atol=0.1)
    assert np.mean(elbo) < np.mean(ll)
