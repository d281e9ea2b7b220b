"""Which scale parameterisation should `GaussianEncoderHead` use by default?

The same MLP VAE (64-256-128-(z 8), mirrored decoder, Bernoulli likelihood,
Adam 1e-3, batch 100, ELBO K=1, XLA) with only the posterior head changed:

```none
softplus         scale = softplus(r) + 1e-4           (r = 0 -> scale 0.69)
softplus, init 1 scale = softplus(r) + 1e-4, bias of r at softplus^-1(1)
                                                      (r = b -> scale 1.0)
log_variance     scale = exp(clip(r, -20, 20) / 2) + 1e-4   (r = 0 -> scale 1.0)
keras.io         the hand-written keras.io VAE (z_log_var Dense, exp(r / 2)),
                 a keras.Model with its own train_step (baselines.py)
```

on two data sets: scikit-learn's 8x8 digits (binarized, 1437 / 360) and a
synthetic set drawn from a random nonlinear latent model (z ~ N(0, I_4),
x ~ Bernoulli(sigmoid(W2 tanh(W1 z + b1) + b2)), 64 pixels, 2000 / 500).
Test log p(x) by importance sampling with K = 1000 (VAEModel's estimator;
for keras.io the hand-written one, `quality.plain_evaluate`), mean ± sd
over seeds.

    python benchmarks/head_study.py [--epochs 100] [--seeds 0 1 2] [--quick]
"""

import math
import sys

import harness  # first: it sets TF's log level before TF is imported
import keras
import keras_vae
import numpy as np

import baselines
import quality

HEADS = ("softplus", "softplus, init 1", "log_variance", "keras.io")
HIDDEN, LATENT = (256, 128), 8
QUICK = {"epochs": 1, "train_examples": 500, "test_examples": 50,
         "samples": 20, "datasets": ["synthetic"],
         # "softplus" and "log_variance" differ from "softplus, init 1"
         # in one argument; eager train steps.
         "heads": ("softplus, init 1", "keras.io")}


def synthetic(seed=0, d=64, latent=4, n_train=2000, n_test=500):
    rng = np.random.default_rng(1000 + seed)
    w1 = rng.normal(size=(latent, 32)) * 1.5
    b1 = rng.normal(size=32)
    w2 = rng.normal(size=(32, d)) * 1.0
    b2 = rng.normal(size=d) - 1.0
    z = rng.normal(size=(n_train + n_test, latent))
    p = 1 / (1 + np.exp(-(np.tanh(z @ w1 + b1) @ w2 + b2)))
    x = (rng.random(p.shape) < p).astype("float32")
    return x[:n_train], x[n_train:]


def build(head, dim, seed, quick=False):
    """`baselines.mlp_vae` with the head's scale map chosen; the layers are
    made in the order of the run in the README (head and KLRegularizer
    before the MLP), which fixes the initial weights."""
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((dim,))
    param = "log_variance" if head == "log_variance" else "softplus"
    layer = keras_vae.GaussianEncoderHead(LATENT, scale_parameterization=param)
    q = keras_vae.KLRegularizer()(layer(baselines.mlp(x_in, HIDDEN)))
    z = keras_vae.ReparameterizedSample(seed=seed)(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(dim)(
        baselines.mlp(z, HIDDEN[::-1])))
    if head == "softplus, init 1":
        layer.scale_dense.bias.assign(
            np.full(LATENT, math.log(math.expm1(1.0 - 1e-4)), "float32"))
    return baselines.compile_vae(vae, **harness.compile_kwargs(quick))


def run(head, data, seed, epochs, k, quick=False):
    x_train, x_test = data
    ds = quality.make_dataset(x_train, seed)
    if head == "keras.io":
        keras.utils.set_random_seed(seed)
        model = baselines.hand_written(x_train.shape[1], HIDDEN, LATENT, seed,
                                       **harness.compile_kwargs(quick))
        model.fit(ds, epochs=epochs, verbose=0)
        log_px, _, _ = quality.plain_evaluate(model, x_test, k, seed=seed)
    else:
        model = build(head, x_train.shape[1], seed, quick)
        model.fit(ds, epochs=epochs, verbose=0)
        log_px = model.log_likelihood(x_test, num_samples=k, seed=seed)
    return float(np.mean(log_px))


def main(argv=None):
    p = harness.parser(__doc__, f"a smoke run: 1 seed, {QUICK}")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--datasets", nargs="+", choices=("digits", "synthetic"))
    args = p.parse_args(argv)
    harness.positive(p, args, "epochs", "samples")
    sets = {"digits": lambda: quality.load("digits"), "synthetic": synthetic}
    names = args.datasets or (QUICK["datasets"] if args.quick else list(sets))
    if args.quick:
        args.epochs, args.seeds, args.samples = (
            QUICK["epochs"], args.seeds[:1], QUICK["samples"])
    report = harness.Report("GaussianEncoderHead scale parameterisation")
    results = {}
    for name in names:
        x_train, x_test = sets[name]()
        if args.quick:
            x_train = harness.whole_batches(
                x_train[:QUICK["train_examples"]], quality.BATCH_SIZE)
            x_test = x_test[:QUICK["test_examples"]]
        for head in QUICK["heads"] if args.quick else HEADS:
            for seed in args.seeds:
                ll = run(head, (x_train, x_test), seed, args.epochs,
                         args.samples, args.quick)
                results.setdefault((name, head), []).append(ll)
                print(f"{name:9s} {head:18s} seed {seed}: test log p(x) "
                      f"{ll:.3f}", flush=True)
    report.add(
        f"MLP 64-256-128-(z 8), {args.epochs} epochs, batch 100, Adam 1e-3, "
        f"seeds {args.seeds}, test log p(x) with K = {args.samples}", "",
        *harness.table(
            ["data", "head", "test log p(x) per seed", "mean ± sd"],
            [[name, head, ", ".join(f"{v:.2f}" for v in lls),
              f"{np.mean(lls):.2f} ± {np.std(lls):.2f}"]
             for (name, head), lls in results.items()], "llll"))
    report.emit(args.output)
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
