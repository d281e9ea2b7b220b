"""A linear VAE trained by `fit` against the closed-form PPCA solution.

Claim checked: a linear VAE trained by `VAEModel.fit` on data from a
probabilistic PCA model reaches, on held-out data, an importance-sampled
log-likelihood within 0.05 nats per example of the PPCA maximum-likelihood
solution computed in closed form (Tipping & Bishop 1999).

```none
data:   z ~ N(0, I_L),  x = W z + b + sigma eps,  eps ~ N(0, I_D)
        D = 10, L = 3, N_train = 5000, N_test = 2000, fixed seed
PPCA ML and the exact log p(x): closed form (ppca_closed_form.py)
linear VAE:
        encoder  x -> GaussianEncoderHead(L, covariance="diag" | "full"):
                 loc and the scale's pre-activation affine in x
        decoder  z -> Dense(D) (the mean W z + b)  and  one shared raw scale
        likelihood GaussianNLL(scale=None): x | z ~ N(W z + b, sigma^2 I)
training: Adam, learning rate cosine-decayed from 1e-2 (the decay removes
        most of the gradient noise around the optimum), ELBO K=1, batch 250
```

The observation noise is learned, as in PPCA, and kept honest: the
decoder's raw-scale output is one trainable scalar broadcast to every example
and dimension (`SharedRawScale`), so sigma depends neither on z (that would
be heteroscedastic) nor on the dimension (factor analysis, a different
model). The VAE's generative model is then exactly the PPCA family, with a
closed-form marginal likelihood too, which the report shows next to the
importance-sampled estimate: the gap to the ML solution splits into
"training did not reach the optimum" and "the K=1000 estimator is off".

Posterior family: the exact PPCA posterior has a covariance that is the
same for every x and diagonal only when the columns of W are orthogonal;
`covariance="full"` contains it for every W. W_ML itself has orthogonal
columns, so a diagonal posterior loses nothing at the optimum (Lucas et al.
2019, "Don't blame the ELBO"). Both are run.

    python benchmarks/ppca.py                  # ~1-3 min on 2 CPU cores
    python benchmarks/ppca.py --quick          # smoke test
    python benchmarks/ppca.py --epochs 400 --covariance full --output ppca.md
"""

import math
import sys
import time

import harness  # first: it sets TF's log level before TF is imported
import keras
import keras_vae
import numpy as np
from keras_vae.losses import GaussianNLL

from ppca_closed_form import (D, DATA_SEED, L, N_TEST, N_TRAIN, TRUE_SIGMA,
                              columns_orthogonality, exact_log_px, make_data,
                              ppca_ml, principal_angles_deg)

MODEL_SEED = 1
BATCH_SIZE = 250
PEAK_LR = 1e-2
EPOCHS = 200
EVAL_SAMPLES = 1000
ELBO_SAMPLES = 1000           # MC error of the mean held-out ELBO ~0.001 nats
TARGET_GAP = 0.05              # nats per example
QUICK = {"epochs": 2, "eval_samples": 20, "elbo_samples": 20}


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


def run(covariance, data, ml, epochs, eval_samples, elbo_samples):
    x_train, x_test = (data[k].astype("float32") for k in ("x_train",
                                                           "x_test"))
    steps = epochs * math.ceil(N_TRAIN / BATCH_SIZE)
    vae, loc_layer, scale_layer, likelihood = build_linear_vae(
        covariance, steps, PEAK_LR)
    # A static batch size (drop_remainder; nothing is dropped) for
    # covariance="full" under XLA: with an unknown one, TF's gradient of
    # tf.linalg.set_diag (tfb.FillScaleTriL) shapes the diagonal with a
    # tf.cond, which XLA cannot compile.
    assert N_TRAIN % BATCH_SIZE == 0
    ds = harness.dataset(x_train, BATCH_SIZE, shuffle_seed=DATA_SEED,
                         drop_remainder=True)
    _, train_s = harness.timed(
        lambda: vae.fit(ds, epochs=epochs, verbose=0, shuffle=False))
    start = time.perf_counter()
    is_test = vae.log_likelihood(x_test, num_samples=eval_samples)
    elbo_test = vae.elbo(x_test, num_samples=elbo_samples)
    eval_s = time.perf_counter() - start
    learned = learned_params(loc_layer, scale_layer, likelihood)
    _, scale = vae.encode(x_test[:1])
    return {
        "covariance": covariance, "epochs": epochs, "train_s": train_s,
        "eval_s": eval_s,
        "is_test": float(np.mean(is_test)),
        "is_test_finite": bool(np.all(np.isfinite(is_test))),
        "exact_test": float(np.mean(exact_log_px(learned, data["x_test"]))),
        "exact_train": float(np.mean(exact_log_px(learned, data["x_train"]))),
        "elbo_test": float(np.mean(elbo_test)),
        "sigma": math.sqrt(learned["sigma2"]),
        "angles": principal_angles_deg(learned["w"], ml["w"]),
        "w_orth": columns_orthogonality(learned["w"]),
        "posterior_scale": scale[0],
    }


def report_lines(ml, exact, rows, eval_samples):
    ml_test = exact["ml", "x_test"]
    truth_test = exact["truth", "x_test"]
    table = [["true parameters (exact)", "-", f"{truth_test:.4f}",
              f"{ml_test - truth_test:+.4f}",
              f"{exact['truth', 'x_train']:.4f}", "-"],
             ["PPCA ML, closed form (exact)", "-", f"{ml_test:.4f}", "0",
              f"{exact['ml', 'x_train']:.4f}", "-"]]
    checks = []
    for r in rows:
        name = f"linear VAE, q {r['covariance']}, {r['epochs']} epochs"
        gap = ml_test - r["is_test"]
        table += [
            [f"{name}: importance-sampled (K={eval_samples})",
             f"{r['train_s']:.1f}", f"{r['is_test']:.4f}", f"{gap:+.4f}",
             "-", f"{r['elbo_test']:.4f}"],
            [f"{name}: its decoder's exact log p(x)", "-",
             f"{r['exact_test']:.4f}", f"{ml_test - r['exact_test']:+.4f}",
             f"{r['exact_train']:.4f}", "-"]]
        ok = abs(gap) < TARGET_GAP and r["is_test_finite"]
        checks.append([
            r["covariance"], f"{gap:+.4f}", "yes" if ok else "NO",
            f"{r['is_test'] - r['exact_test']:+.4f}",
            f"{r['exact_test'] - r['elbo_test']:.4f}", f"{r['sigma']:.4f}",
            f"{np.max(r['angles']):.2f}", f"{r['w_orth']:.3f}",
            f"{r['train_s'] + r['eval_s']:.1f}"])
    return [
        f"data: D={D}, L={L}, sigma={TRUE_SIGMA}, W and b ~ N(0, 1), "
        f"{N_TRAIN} train / {N_TEST} test, seed {DATA_SEED}; closed-form "
        f"ML sigma = {math.sqrt(ml['sigma2']):.4f}",
        f"training: ELBO (K=1), Adam with cosine decay from {PEAK_LR:g}, "
        f"batch {BATCH_SIZE}, seed {MODEL_SEED}", "",
        *harness.table(["model", "train time (s)", "held-out log p(x)",
                        "gap to ML (nats/example)", "train log p(x)",
                        "held-out ELBO"], table),
        "",
        "Gap to ML = ML held-out log p(x) - this row's (positive: below the "
        f"ML solution); target |gap| < {TARGET_GAP} for the importance-"
        "sampled rows. Means over examples, nats. The ML solution maximises "
        "the *training* log-likelihood, so on held-out data another model can "
        "score slightly above it (negative gap).", "",
        *harness.table(["q", "gap (IS)", f"within {TARGET_GAP}",
                        "IS - exact (estimator)", "exact - ELBO (held-out)",
                        "learned sigma", "max principal angle to W_ML (deg)",
                        "max cos between W columns", "time (s)"], checks,
                       "lrlrrrrrr"),
        "",
        "exact - ELBO is KL(q(z|x) || p(z|x)) averaged over held-out x: 0 "
        "for an exact posterior. Max cos between W columns is 0 when they "
        "are orthogonal (what a diagonal posterior needs to be exact).",
    ]


def main(argv=None):
    p = harness.parser(__doc__, f"smoke test: {QUICK['epochs']} epochs, K = "
                       f"{QUICK['eval_samples']}")
    p.add_argument("--epochs", type=int, help=f"default {EPOCHS}")
    p.add_argument("--covariance", nargs="+", choices=("diag", "full"),
                   help="default: diag full (--quick: full, the one that "
                   "needs a static batch size under XLA)")
    args = p.parse_args(argv)
    harness.positive(p, args, "epochs")
    args.covariance = args.covariance or (
        ["full"] if args.quick else ["diag", "full"])
    epochs = args.epochs or (QUICK["epochs"] if args.quick else EPOCHS)
    k, k_elbo = ((QUICK["eval_samples"], QUICK["elbo_samples"]) if args.quick
                 else (EVAL_SAMPLES, ELBO_SAMPLES))
    report = harness.Report("PPCA: a linear VAE trained by `fit` vs the "
                            "closed-form ML solution")
    data = make_data()
    ml = ppca_ml(data["x_train"])
    truth = {key: data[key] for key in ("w", "b", "sigma2")}
    exact = {(name, part): float(np.mean(exact_log_px(p_, data[part])))
             for name, p_ in (("ml", ml), ("truth", truth))
             for part in ("x_train", "x_test")}
    print(f"closed-form PPCA ML: held-out log p(x) "
          f"{exact['ml', 'x_test']:.4f}, train {exact['ml', 'x_train']:.4f}; "
          f"true parameters: held-out {exact['truth', 'x_test']:.4f}",
          flush=True)
    rows = []
    for cov in args.covariance:
        r = run(cov, data, ml, epochs, k, k_elbo)
        print(f"  q {cov}: trained {epochs} epochs in {r['train_s']:.1f} s, "
              f"held-out IS log p(x) {r['is_test']:.4f} (gap to ML "
              f"{exact['ml', 'x_test'] - r['is_test']:+.4f}), posterior "
              f"scale of one x: "
              f"{np.array2string(r['posterior_scale'], precision=4)}",
              flush=True)
        rows.append(r)
    report.add(*report_lines(ml, exact, rows, k))
    report.emit(args.output)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
