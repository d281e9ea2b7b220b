"""A conv VAE on the 8x8 digits: spatial latent (4, 4, 2) vs flat latent 32.

Same convolutional encoder (8x8x1 -> 4x4x32 feature map), same latent size
(32 numbers), same budget (epochs, batch, optimizer, seeds). The spatial
model keeps the map: `GaussianEncoderHead(2, flatten=False)` (a 1x1
projection per position) and a Conv2DTranspose decoder on z (B, 4, 4, 2).
The flat model flattens the map into `GaussianEncoderHead(32)` and its
decoder starts with Dense -> (4, 4, 32). Reports test log p(x) by
importance sampling (K = 1000), test ELBO, parameters and seconds.

    python benchmarks/spatial_latent.py [--epochs 60] [--seeds 0 1 2] [--quick]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402
from common import cpu_model, emit  # noqa: E402


def load(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x = load_digits().data.reshape(-1, 8, 8, 1) / 16.0
    train, test = train_test_split(x, test_size=0.2, random_state=0)
    rng = np.random.default_rng(seed)
    binar = lambda a: (rng.random(a.shape) < a).astype("float32")  # noqa: E731
    return binar(train), binar(test)


def encoder_features(x_in):
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x_in)
    return keras.layers.Conv2D(32, 3, strides=2, padding="same",
                               activation="relu")(h)


def decoder_head(h):
    h = keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same",
                                     activation="relu")(h)
    return keras.layers.Conv2D(1, 3, padding="same")(h)  # logits (8, 8, 1)


def build(kind, seed):
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((8, 8, 1))
    h = encoder_features(x_in)
    if kind == "spatial":
        q = keras_vae.GaussianEncoderHead(2, flatten=False)(h)
        z = keras_vae.ReparameterizedSample(seed=seed)(
            keras_vae.KLRegularizer()(q))
        h = keras.layers.Conv2D(32, 1, activation="relu")(z)
    else:
        q = keras_vae.GaussianEncoderHead(32)(h)
        z = keras_vae.ReparameterizedSample(seed=seed)(
            keras_vae.KLRegularizer()(q))
        h = keras.layers.Dense(4 * 4 * 32, activation="relu")(z)
        h = keras.layers.Reshape((4, 4, 32))(h)
    return keras_vae.VAEModel(x_in, decoder_head(h), name=f"{kind}_vae")


def run(kind, seed, x_train, x_test, epochs, k):
    vae = build(kind, seed)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras_vae.losses.BernoulliNLL())
    ds = (tf.data.Dataset.from_tensor_slices(x_train)
          .shuffle(len(x_train), seed=seed).batch(64))
    start = time.perf_counter()
    vae.fit(ds, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    ll = vae.log_likelihood(x_test, num_samples=k, seed=seed)
    elbo = vae.elbo(x_test, num_samples=1, seed=seed)
    return {"ll": float(np.mean(ll)), "elbo": float(np.mean(elbo)),
            "params": vae.count_params(), "seconds": seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--quick", action="store_true",
                        help="2 epochs, 1 seed, K = 20 (a smoke run)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds, args.samples = 2, args.seeds[:1], 20
    results = {}
    for kind in ("flat", "spatial"):
        for seed in args.seeds:
            x_train, x_test = load(seed)
            r = run(kind, seed, x_train, x_test, args.epochs, args.samples)
            results.setdefault(kind, []).append(r)
            print(f"{kind:8s} seed {seed}: log p(x) {r['ll']:.2f}  "
                  f"ELBO {r['elbo']:.2f}  {r['seconds']:.0f} s", flush=True)
    lines = [
        f"Conv VAE on binarized 8x8 digits, {args.epochs} epochs, batch 64, "
        f"Adam 1e-3, seeds {args.seeds}, test log p(x) with K = "
        f"{args.samples}; {cpu_model()}, TF {tf.__version__}, Keras "
        f"{keras.__version__}",
        "",
        "| latent | shape | params | test log p(x) (nats) | test ELBO | "
        "train s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, shape in (("flat", "(32,)"), ("spatial", "(4, 4, 2)")):
        rs = results[kind]
        ll = [r["ll"] for r in rs]
        lines.append(
            f"| {kind} | {shape} | {rs[0]['params']:,} | "
            f"{np.mean(ll):.2f} ± {np.std(ll):.2f} | "
            f"{np.mean([r['elbo'] for r in rs]):.2f} | "
            f"{np.mean([r['seconds'] for r in rs]):.0f} |"
        )
    emit(lines, args.output)
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
