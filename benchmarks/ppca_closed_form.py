"""The closed-form side of `ppca.py`: PPCA data, the maximum-likelihood
solution of Tipping & Bishop (1999) and the exact marginal likelihood, in
float64 NumPy, written independently of keras_vae.

```none
data:     z ~ N(0, I_L),  x = W z + b + sigma eps,  eps ~ N(0, I_D)
PPCA ML:  S = (1/N) sum_n (x_n - xbar)(x_n - xbar)^T = U diag(lam) U^T
          sigma^2_ML = mean(lam_{L+1..D}),
          W_ML = U_L (diag(lam_1..L) - sigma^2_ML I)^1/2,  b_ML = xbar
exact:    log p(x) = log N(x; b, W W^T + sigma^2 I)
```
"""

import math

import numpy as np

D, L = 10, 3
N_TRAIN, N_TEST = 5000, 2000
TRUE_SIGMA = 0.5
DATA_SEED = 0


def make_data(seed=DATA_SEED):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(D, L))
    b = rng.normal(size=(D,))
    z = rng.normal(size=(N_TRAIN + N_TEST, L))
    x = z @ w.T + b + TRUE_SIGMA * rng.normal(size=(N_TRAIN + N_TEST, D))
    return {"w": w, "b": b, "sigma2": TRUE_SIGMA**2,
            "x_train": x[:N_TRAIN], "x_test": x[N_TRAIN:]}


def gaussian_log_prob(x, mean, cov):
    """log N(x; mean, cov) per row, float64."""
    chol = np.linalg.cholesky(cov)
    r = np.linalg.solve(chol, (x - mean).T)            # (D, N)
    log_det = 2.0 * np.sum(np.log(np.diag(chol)))
    return -0.5 * (np.sum(r**2, 0) + log_det
                   + x.shape[1] * math.log(2 * math.pi))


def ppca_ml(x):
    """Tipping & Bishop (1999) closed-form maximum-likelihood solution."""
    b = x.mean(0)
    s = np.cov(x, rowvar=False, bias=True)              # 1/N: the ML estimate
    lam, u = np.linalg.eigh(s)
    lam, u = lam[::-1], u[:, ::-1]                      # descending
    sigma2 = lam[L:].mean()
    w = u[:, :L] * np.sqrt(lam[:L] - sigma2)
    return {"w": w, "b": b, "sigma2": sigma2}


def exact_log_px(p, x):
    """log N(x; b, W W^T + sigma^2 I): PPCA's marginal likelihood."""
    return gaussian_log_prob(x, p["b"], p["w"] @ p["w"].T
                             + p["sigma2"] * np.eye(D))


def principal_angles_deg(a, b):
    """Angles between the column spaces of a and b (degrees)."""
    qa, _ = np.linalg.qr(a)
    qb, _ = np.linalg.qr(b)
    s = np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), -1.0, 1.0)
    return np.degrees(np.arccos(s))


def columns_orthogonality(w):
    """max |cos| between distinct columns of w (0 = orthogonal)."""
    n = w / np.linalg.norm(w, axis=0)
    g = np.abs(n.T @ n - np.eye(w.shape[1]))
    return float(g.max())
