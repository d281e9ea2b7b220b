"""Per-example refinement converges with its default step size.

PPCA (D = 10, L = 3, σ = 0.5, W = a · N(0, 1)) with the true decoder and a
full-covariance head: the refined q can be the exact posterior, so the
refined ELBO's optimum is log p(x), in closed form:

```none
log p(x)  = log N(x; b, W Wᵀ + σ² I)
p(z | x)  = N(M⁻¹ Wᵀ (x - b), σ² M⁻¹),   M = Wᵀ W + σ² I
precision = Wᵀ W / σ² + I         a = 0.15 ... 1.4: eigenvalues 1.1 ... 111
```

Two starts: a near one (a linear head at the exact posterior mean shifted
by 0.3 and its Cholesky factor times 1.5: what a trained encoder leaves,
0.9 to 10 nats below log p(x)) and a far one (an untrained MLP encoder,
3 to 320 nats below). With a constant step of 0.05, 1,000 steps ended
0.03-0.25 nat short (Adam's steps jitter around the optimum, the more so
the higher the precision); the cosine decay of `keras_vae.models.refine`
ends within 0.01 from the near start and 0.04 from the far one (0.01
with `refine_learning_rate=0.1`).
Each model is built once and its weights set per case, so the refinement
is compiled once per model.
"""

import keras
import numpy as np
import pytest
from scipy import stats

import keras_vae
from keras_vae.losses import GaussianNLL

D, L, SIGMA = 10, 3, 0.5
ROWS, EVAL_SAMPLES, STEPS = 200, 200, 1000
TOLERANCE = 0.05  # nats per example (the mean's Monte Carlo sd is ~0.01)
SHIFT, SCALE_FACTOR = 0.3, 1.5  # the near start


def _ppca(scale, seed=0):
    rng = np.random.default_rng(seed)
    w = scale * rng.normal(size=(D, L))
    b = rng.normal(size=D)
    z = rng.normal(size=(ROWS, L))
    x = z @ w.T + b + SIGMA * rng.normal(size=(ROWS, D))
    return w, b, x.astype("float32")


def _model(hidden, seed=0):
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((D,))
    h = keras.layers.Dense(hidden, activation="tanh")(x_in) if hidden \
        else x_in
    head = keras_vae.GaussianEncoderHead(L, covariance="full",
                                         min_scale=1e-6)
    q = keras_vae.KLRegularizer()(head(h))
    z = keras_vae.ReparameterizedSample(seed=seed + 1)(q)
    decoder = keras.layers.Dense(D, name="decoder")
    vae = keras_vae.VAEModel(x_in, decoder(z))
    vae.compile(loss=GaussianNLL(scale=SIGMA))
    return vae, head, decoder, [w.copy() for w in vae.get_weights()]


@pytest.fixture(scope="module")
def models():
    return {"far": _model(hidden=32), "near": _model(hidden=0)}


def _set_start(models, start, w, b):
    vae, head, decoder, initial = models[start]
    vae.set_weights(initial)
    decoder.set_weights([w.T.astype("float32"), b.astype("float32")])
    if start == "near":
        m_inv = np.linalg.inv(w.T @ w + SIGMA**2 * np.eye(L))
        post_map = m_inv @ w.T                  # mean = post_map (x - b)
        chol = np.linalg.cholesky(SIGMA**2 * m_inv)
        head.loc_dense.set_weights([post_map.T.astype("float32"),
                                    (SHIFT - post_map @ b).astype("float32")])
        raw = head.raw_scale_params(
            (SCALE_FACTOR * chol).astype("float32")).numpy()
        head.scale_dense.set_weights(
            [np.zeros((D, raw.shape[-1]), "float32"), raw])
    return vae


@pytest.mark.slow
@pytest.mark.parametrize("scale", [0.15, 0.5, 1.0, 1.4])
@pytest.mark.parametrize("start", ["near", "far"])
def test_default_refinement_reaches_log_p_x(models, scale, start):
    w, b, x = _ppca(scale)
    vae = _set_start(models, start, w, b)
    exact = stats.multivariate_normal(
        b, w @ w.T + SIGMA**2 * np.eye(D)).logpdf(x).mean()
    refined = vae.elbo(x, num_samples=EVAL_SAMPLES, seed=0,
                       refine_steps=STEPS).mean()
    precision = np.linalg.eigvalsh(w.T @ w / SIGMA**2 + np.eye(L))
    print(f"precision {np.round(precision, 1)}, {start} start: refined "
          f"ELBO - log p(x) = {refined - exact:+.3f}")
    assert abs(refined - exact) < TOLERANCE
