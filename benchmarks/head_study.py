"""Which scale parameterisation should `GaussianEncoderHead` use by default?

The same MLP VAE (64-256-128-(z 8), mirrored decoder, Bernoulli likelihood,
Adam 1e-3, batch 100, ELBO K=1, XLA) with only the posterior head changed:

```none
softplus         scale = softplus(r) + 1e-4           (r = 0 -> scale 0.69)
softplus, init 1 scale = softplus(r) + 1e-4, bias of r at softplus^-1(1)
                                                      (r = b -> scale 1.0)
log_variance     scale = exp(clip(r, -20, 20) / 2) + 1e-4   (r = 0 -> scale 1.0)
keras.io         the hand-written keras.io VAE (z_log_var Dense, exp(r / 2)),
                 a keras.Model with its own train_step (benchmarks/common.py)
```

on two data sets: scikit-learn's 8x8 digits (binarized, 1437 / 360) and a
synthetic set drawn from a random nonlinear latent model (z ~ N(0, I_4),
x ~ Bernoulli(sigmoid(W2 tanh(W1 z + b1) + b2)), 64 pixels, 2000 / 500).
Test log p(x) by importance sampling with K = 1000 (VAEModel's estimator;
for keras.io the hand-written one of `quality.py`), mean ± sd over seeds.

    python benchmarks/head_study.py [--epochs 100] [--seeds 0 1 2] [--quick]
"""

import argparse
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402
import quality  # noqa: E402
from common import cpu_model, emit, mlp  # noqa: E402

HEADS = ("softplus", "softplus, init 1", "log_variance", "keras.io")
HIDDEN, LATENT = (256, 128), 8


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


def build(head, dim, seed):
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((dim,))
    param = "log_variance" if head == "log_variance" else "softplus"
    layer = keras_vae.GaussianEncoderHead(LATENT, scale_parameterization=param)
    q = keras_vae.KLRegularizer()(layer(mlp(x_in, HIDDEN)))
    z = keras_vae.ReparameterizedSample(seed=seed)(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(dim)(mlp(z, HIDDEN[::-1])))
    if head == "softplus, init 1":
        layer.scale_dense.bias.assign(
            np.full(LATENT, math.log(math.expm1(1.0 - 1e-4)), "float32"))
    vae.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras_vae.losses.BernoulliNLL())
    return vae


def run(head, data, seed, epochs, k):
    x_train, x_test = data
    quality.SEED = seed  # the plain model's and the datasets' seed
    ds = quality.make_dataset(x_train)
    if head == "keras.io":
        model = quality.build_plain_model(x_train.shape[1], HIDDEN, LATENT)
        model.fit(ds, epochs=epochs, verbose=0)
        log_px, _, _ = quality.plain_evaluate(model, x_test, k)
    else:
        model = build(head, x_train.shape[1], seed)
        model.fit(ds, epochs=epochs, verbose=0)
        log_px = model.log_likelihood(x_test, num_samples=k, seed=seed)
    return float(np.mean(log_px))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--datasets", nargs="+",
                        default=["digits", "synthetic"])
    parser.add_argument("--quick", action="store_true",
                        help="2 epochs, 1 seed, K = 100 (a smoke run)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds, args.samples = 2, args.seeds[:1], 100
    quality.SEED = 0
    sets = {"digits": quality.load("digits"), "synthetic": synthetic()}
    results = {}
    for name in args.datasets:
        for head in HEADS:
            for seed in args.seeds:
                ll = run(head, sets[name], seed, args.epochs, args.samples)
                results.setdefault((name, head), []).append(ll)
                print(f"{name:9s} {head:18s} seed {seed}: test log p(x) "
                      f"{ll:.3f}", flush=True)
    lines = [
        f"GaussianEncoderHead scale parameterisation: MLP 64-256-128-(z 8), "
        f"{args.epochs} epochs, batch 100, Adam 1e-3, seeds {args.seeds}, "
        f"test log p(x) with K = {args.samples}; {cpu_model()}, "
        f"TF {tf.__version__}, Keras {keras.__version__}",
        "",
        "| data | head | test log p(x) per seed | mean ± sd |",
        "| --- | --- | --- | --- |",
    ]
    for (name, head), lls in results.items():
        lines.append(f"| {name} | {head} | "
                     f"{', '.join(f'{v:.2f}' for v in lls)} | "
                     f"{np.mean(lls):.2f} ± {np.std(lls):.2f} |")
    emit(lines, args.output)
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
