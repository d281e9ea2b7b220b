"""A linear VAE trained by `fit` against the closed-form PPCA solution.

Claim checked: a linear VAE trained by `VAEModel.fit` on data from a
probabilistic PCA model reaches, on held-out data, an importance-sampled
log-likelihood within 0.05 nats per example of the PPCA maximum-likelihood
solution computed in closed form (Tipping & Bishop 1999).

```none
data:   z ~ N(0, I_L),  x = W z + b + sigma eps,  eps ~ N(0, I_D)
        D = 10, L = 3, N_train = 5000, N_test = 2000, fixed seed
PPCA ML (closed form, from the training set):
        S = (1/N) sum_n (x_n - xbar)(x_n - xbar)^T = U diag(lam) U^T  (lam descending)
        sigma^2_ML = mean(lam_{L+1..D}),  W_ML = U_L (diag(lam_1..L) - sigma^2_ML I)^1/2,
        b_ML = xbar
        log p(x) = log N(x; b_ML, W_ML W_ML^T + sigma^2_ML I)      (exact)
linear VAE:
        encoder  x -> GaussianEncoderHead(L, covariance="diag" | "full"):
                 loc and scale are affine in x (then softplus on the scales)
        decoder  z -> Dense(D) (the mean W z + b)  and  one shared raw scale
        likelihood GaussianNLL(scale=None): x | z ~ N(W z + b, sigma^2 I)
```

The observation noise is learned, as in PPCA, and is kept honest: the
decoder's raw-scale output is one trainable scalar broadcast to every example
and every dimension (`SharedRawScale`, below), so sigma cannot depend on z
(a Dense on z could make the noise heteroscedastic, which is no longer a
linear-Gaussian model) nor on the dimension (a per-dimension bias would make
it factor analysis, a different and larger model whose ML solution is not
the PPCA one). With that decoder the VAE's generative model is exactly the
PPCA family, and its marginal likelihood is known in closed form too; the
report shows it next to the importance-sampled estimate, which splits the
gap to the ML solution into "training did not reach the optimum" and
"the K=1000 estimator is off".

Posterior family. The exact PPCA posterior p(z|x) = N(M^-1 W^T (x - b),
sigma^2 M^-1), M = W^T W + sigma^2 I, is Gaussian with a covariance that is
the same for every x; it is diagonal only when the columns of W are
orthogonal. `covariance="full"` contains it for every W. With
`covariance="diag"` the ELBO is tight only at W with orthogonal columns, but
the ML solution is unique only up to a rotation W_ML R, and W_ML itself has
orthogonal columns, so the diagonal family loses nothing at the optimum: the
ELBO's optimum is the ML likelihood in both cases (Lucas et al. 2019, "Don't
blame the ELBO"). Both are run and reported.

Training: Adam with a cosine-decayed learning rate (the decay removes most of
the stochastic-gradient jitter around the optimum, which otherwise costs a
few hundredths of a nat), ELBO with K=1, mini-batches of 250.

Usage (from the repository root):

```none
python benchmarks/ppca.py                  # ~1-3 min on 2 CPU cores
python benchmarks/ppca.py --quick          # smoke test
python benchmarks/ppca.py --epochs 400 --covariance full --output ppca.md
```
"""

import argparse
import datetime
import math
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402
from common import cpu_model, emit  # noqa: E402
from keras_vae.losses import GaussianNLL  # noqa: E402

D, L = 10, 3
N_TRAIN, N_TEST = 5000, 2000
TRUE_SIGMA = 0.5
DATA_SEED = 0
MODEL_SEED = 1
BATCH_SIZE = 250
PEAK_LR = 1e-2
EPOCHS = 200
EVAL_SAMPLES = 1000
ELBO_SAMPLES = 1000           # MC error of the mean held-out ELBO ~0.001 nats
TARGET_GAP = 0.05              # nats per example
QUICK = {"epochs": 5, "eval_samples": 100}


# --------------------------------------------------------------------- data
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
    return -0.5 * (np.sum(r**2, 0) + log_det + x.shape[1] * math.log(2 * math.pi))


def ppca_ml(x):
    """Tipping & Bishop (1999) closed-form maximum-likelihood solution."""
    b = x.mean(0)
    s = np.cov(x, rowvar=False, bias=True)              # 1/N: the ML estimate
    lam, u = np.linalg.eigh(s)
    lam, u = lam[::-1], u[:, ::-1]                      # descending
    sigma2 = lam[L:].mean()
    w = u[:, :L] * np.sqrt(lam[:L] - sigma2)
    return {"w": w, "b": b, "sigma2": sigma2}


def marginal_cov(p):
    return p["w"] @ p["w"].T + p["sigma2"] * np.eye(D)


def exact_log_px(p, x):
    return gaussian_log_prob(x, p["b"], marginal_cov(p))


# -------------------------------------------------------------------- model
class SharedRawScale(keras.layers.Layer):
    """The raw-scale half of a `GaussianNLL(scale=None)` decoder output: one
    trainable scalar r, the same for every example and every dimension, so
    sigma = softplus(r) + min_scale is PPCA's isotropic noise. The input
    (z) only supplies the batch size; its values are not used."""

    def __init__(self, units, initial_sigma=1.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.initial_sigma = initial_sigma

    def build(self, input_shape):
        raw = math.log(math.expm1(self.initial_sigma))   # softplus^-1
        self.raw = self.add_weight(
            name="raw_scale", shape=(),
            initializer=keras.initializers.Constant(raw))

    def call(self, z):
        return keras.ops.zeros((keras.ops.shape(z)[0], self.units)) + self.raw

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)


def build_linear_vae(covariance, steps, peak_lr):
    keras.utils.set_random_seed(MODEL_SEED)
    x_in = keras.Input((D,))
    q = keras_vae.GaussianEncoderHead(L, covariance=covariance)(x_in)
    q = keras_vae.KLRegularizer()(q)
    z = keras_vae.ReparameterizedSample(seed=MODEL_SEED)(q)
    loc_layer = keras.layers.Dense(D, name="decoder_loc")     # W z + b
    scale_layer = SharedRawScale(D, name="decoder_raw_scale")
    params = keras.layers.Concatenate()([loc_layer(z), scale_layer(z)])
    vae = keras_vae.VAEModel(x_in, params)
    schedule = keras.optimizers.schedules.CosineDecay(
        peak_lr, decay_steps=steps, alpha=1e-3)
    likelihood = GaussianNLL(scale=None)
    vae.compile(optimizer=keras.optimizers.Adam(schedule), loss=likelihood)
    return vae, loc_layer, scale_layer, likelihood


def learned_params(loc_layer, scale_layer, likelihood):
    kernel, bias = (np.asarray(v, np.float64) for v in loc_layer.get_weights())
    raw = float(keras.ops.convert_to_numpy(scale_layer.raw))
    sigma = math.log1p(math.exp(raw)) + likelihood.min_scale
    return {"w": kernel.T, "b": bias, "sigma2": sigma**2}


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


def run(covariance, data, ml, epochs, eval_samples):
    x_train = data["x_train"].astype("float32")
    x_test = data["x_test"].astype("float32")
    steps = epochs * math.ceil(N_TRAIN / BATCH_SIZE)
    vae, loc_layer, scale_layer, likelihood = build_linear_vae(
        covariance, steps, PEAK_LR)
    # drop_remainder=True gives the batch axis a static size (N_TRAIN is a
    # multiple of BATCH_SIZE, so nothing is dropped). It is needed for
    # covariance="full": with an unknown batch size, TensorFlow's gradient
    # of tf.linalg.set_diag (used by tfb.FillScaleTriL in the head) builds
    # the diagonal's shape with tf.cond, which XLA cannot compile
    # ("Reading input as constant from a dynamic tensor is not yet
    # supported"), so fit fails under the default jit_compile=True.
    assert N_TRAIN % BATCH_SIZE == 0
    ds = (tf.data.Dataset.from_tensor_slices(x_train)
          .shuffle(N_TRAIN, seed=DATA_SEED, reshuffle_each_iteration=True)
          .batch(BATCH_SIZE, drop_remainder=True)
          .prefetch(tf.data.AUTOTUNE))
    start = time.perf_counter()
    history = vae.fit(ds, epochs=epochs, verbose=0, shuffle=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    is_test = vae.log_likelihood(x_test, num_samples=eval_samples)
    elbo_test = vae.elbo(x_test, num_samples=ELBO_SAMPLES)
    elbo_train = vae.elbo(x_train, num_samples=ELBO_SAMPLES)
    eval_s = time.perf_counter() - start
    learned = learned_params(loc_layer, scale_layer, likelihood)
    _, scale = vae.encode(x_test[:1])
    return {
        "covariance": covariance, "epochs": epochs, "train_s": train_s,
        "eval_s": eval_s, "final_loss": history.history["loss"][-1],
        "is_test": float(np.mean(is_test)),
        "is_test_finite": bool(np.all(np.isfinite(is_test))),
        "exact_test": float(np.mean(exact_log_px(learned, data["x_test"]))),
        "exact_train": float(np.mean(exact_log_px(learned, data["x_train"]))),
        "elbo_test": float(np.mean(elbo_test)),
        "elbo_train": float(np.mean(elbo_train)),
        "sigma": math.sqrt(learned["sigma2"]),
        "angles": principal_angles_deg(learned["w"], ml["w"]),
        "w_orth": columns_orthogonality(learned["w"]),
        "posterior_scale": scale[0],
    }


# ------------------------------------------------------------------- report
def report_lines(data, ml, truth_test, ml_test, ml_train, truth_train, rows,
                 eval_samples):
    lines = [
        "## PPCA: linear VAE trained by `fit` vs the closed-form ML solution",
        "",
        f"data: D={D}, L={L}, sigma={TRUE_SIGMA}, W and b ~ N(0, 1), "
        f"{N_TRAIN} train / {N_TEST} test, seed {DATA_SEED}; closed-form "
        f"ML sigma = {math.sqrt(ml['sigma2']):.4f}",
        f"training: ELBO (K=1), Adam with cosine decay from {PEAK_LR:g}, "
        f"batch {BATCH_SIZE}, seed {MODEL_SEED}",
        "",
        "| model | train time (s) | held-out log p(x) | gap to ML "
        "(nats/example) | train log p(x) | held-out ELBO |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| true parameters (exact) | - | {truth_test:.4f} | "
        f"{ml_test - truth_test:+.4f} | {truth_train:.4f} | - |",
        f"| PPCA ML, closed form (exact) | - | {ml_test:.4f} | 0 | "
        f"{ml_train:.4f} | - |",
    ]
    for r in rows:
        name = f"linear VAE, q {r['covariance']}, {r['epochs']} epochs"
        lines.append(
            f"| {name}: importance-sampled (K={eval_samples}) | "
            f"{r['train_s']:.1f} | {r['is_test']:.4f} | "
            f"{ml_test - r['is_test']:+.4f} | - | {r['elbo_test']:.4f} |")
        lines.append(
            f"| {name}: its decoder's exact log p(x) | - | "
            f"{r['exact_test']:.4f} | {ml_test - r['exact_test']:+.4f} | "
            f"{r['exact_train']:.4f} | - |")
    lines += [
        "",
        "Gap to ML = ML held-out log p(x) - this row's (positive: below the "
        f"ML solution); target |gap| < {TARGET_GAP} for the importance-"
        "sampled rows. Means over examples, nats. The ML solution maximises "
        "the *training* log-likelihood, so on held-out data another model can "
        "score slightly above it (negative gap).",
        "",
        "| q | gap (IS) | within 0.05 | IS - exact (estimator) | "
        "exact - ELBO (held-out) | learned sigma | max principal angle to "
        "W_ML (deg) | max cos between W columns | time (s) |",
        "| --- | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        gap = ml_test - r["is_test"]
        lines.append(
            f"| {r['covariance']} | {gap:+.4f} | "
            f"{'yes' if abs(gap) < TARGET_GAP and r['is_test_finite'] else 'NO'}"
            f" | {r['is_test'] - r['exact_test']:+.4f} | "
            f"{r['exact_test'] - r['elbo_test']:.4f} | {r['sigma']:.4f} | "
            f"{np.max(r['angles']):.2f} | {r['w_orth']:.3f} | "
            f"{r['train_s'] + r['eval_s']:.1f} |")
    lines += [
        "",
        "exact - ELBO is KL(q(z|x) || p(z|x)) averaged over held-out x: 0 "
        "for an exact posterior. Max cos between W columns is 0 when they "
        "are orthogonal (what a diagonal posterior needs to be exact).",
    ]
    return lines


def machine_lines(total_s):
    try:
        load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "unknown"
    return [
        f"total wall time: {total_s:.0f} s",
        f"date: {datetime.datetime.now().isoformat(timespec='seconds')}, "
        f"cpu: {cpu_model()}, {os.cpu_count()} logical cores, "
        f"python {platform.python_version()}, tensorflow {tf.__version__}, "
        f"keras {keras.__version__}, keras_vae {keras_vae.__version__}",
        f"load average (1/5/15 min) at the end: {load}",
    ]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, help=f"default {EPOCHS}")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK['epochs']} epochs, K = "
                   f"{QUICK['eval_samples']}")
    p.add_argument("--covariance", nargs="+", choices=("diag", "full"),
                   default=["diag", "full"])
    p.add_argument("--output", help="also write the report (markdown) here")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs <= 0:
        p.error("--epochs must be > 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    epochs = args.epochs or (QUICK["epochs"] if args.quick else EPOCHS)
    eval_samples = QUICK["eval_samples"] if args.quick else EVAL_SAMPLES
    total_start = time.perf_counter()
    data = make_data()
    ml = ppca_ml(data["x_train"])
    truth = {k: data[k] for k in ("w", "b", "sigma2")}
    ml_test = float(np.mean(exact_log_px(ml, data["x_test"])))
    ml_train = float(np.mean(exact_log_px(ml, data["x_train"])))
    truth_test = float(np.mean(exact_log_px(truth, data["x_test"])))
    truth_train = float(np.mean(exact_log_px(truth, data["x_train"])))
    print(f"closed-form PPCA ML: held-out log p(x) {ml_test:.4f}, train "
          f"{ml_train:.4f}; true parameters: held-out {truth_test:.4f}",
          flush=True)
    rows = []
    for cov in args.covariance:
        r = run(cov, data, ml, epochs, eval_samples)
        print(f"  q {cov}: trained {epochs} epochs in {r['train_s']:.1f} s, "
              f"held-out IS log p(x) {r['is_test']:.4f} (gap to ML "
              f"{ml_test - r['is_test']:+.4f}), posterior scale of one x:\n"
              f"{np.array2string(r['posterior_scale'], precision=4)}",
              flush=True)
        rows.append(r)
    lines = report_lines(data, ml, truth_test, ml_test, ml_train, truth_train,
                         rows, eval_samples)
    lines += machine_lines(time.perf_counter() - total_start)
    emit(lines, args.output)


if __name__ == "__main__":
    main()
