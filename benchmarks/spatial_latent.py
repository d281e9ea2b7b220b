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

import sys

import harness  # first: it sets TF's log level before TF is imported
import keras
import keras_vae
import numpy as np

import baselines

BATCH = 64
QUICK = {"epochs": 1, "train_examples": 256, "test_examples": 32,
         "samples": 10}


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


def run(kind, seed, x_train, x_test, epochs, k, quick=False):
    vae = baselines.compile_vae(build(kind, seed),
                                **harness.compile_kwargs(quick))
    _, seconds = harness.timed(lambda: vae.fit(
        harness.dataset(x_train, BATCH, shuffle_seed=seed), epochs=epochs,
        verbose=0))
    ll = vae.log_likelihood(x_test, num_samples=k, seed=seed)
    elbo = vae.elbo(x_test, num_samples=1, seed=seed)
    return {"ll": float(np.mean(ll)), "elbo": float(np.mean(elbo)),
            "params": vae.count_params(), "seconds": seconds}


def main(argv=None):
    p = harness.parser(__doc__, f"{QUICK['epochs']} epoch, 1 seed, K = "
                       f"{QUICK['samples']}, {QUICK['train_examples']} / "
                       f"{QUICK['test_examples']} examples, eager train "
                       "steps (a smoke run)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=1000)
    args = p.parse_args(argv)
    harness.positive(p, args, "epochs", "samples")
    if args.quick:
        args.epochs, args.seeds, args.samples = (
            QUICK["epochs"], args.seeds[:1], QUICK["samples"])
    report = harness.Report("Spatial latent against a flat one")
    results = {}
    for kind in ("flat", "spatial"):
        for seed in args.seeds:
            x_train, x_test = harness.digits(seed, image=True)
            if args.quick:
                x_train = x_train[:QUICK["train_examples"]]
                x_test = x_test[:QUICK["test_examples"]]
            r = run(kind, seed, x_train, x_test, args.epochs, args.samples,
                    args.quick)
            results.setdefault(kind, []).append(r)
            print(f"{kind:8s} seed {seed}: log p(x) {r['ll']:.2f}  "
                  f"ELBO {r['elbo']:.2f}  {r['seconds']:.0f} s", flush=True)
    rows = []
    for kind, shape in (("flat", "(32,)"), ("spatial", "(4, 4, 2)")):
        rs = results[kind]
        ll = [r["ll"] for r in rs]
        rows.append([kind, shape, f"{rs[0]['params']:,}",
                     f"{np.mean(ll):.2f} ± {np.std(ll):.2f}",
                     f"{np.mean([r['elbo'] for r in rs]):.2f}",
                     f"{np.mean([r['seconds'] for r in rs]):.0f}"])
    report.add(
        f"Conv VAE on binarized 8x8 digits, {args.epochs} epochs, batch "
        f"{BATCH}, Adam 1e-3, seeds {args.seeds}, test log p(x) with K = "
        f"{args.samples}", "",
        *harness.table(["latent", "shape", "params", "test log p(x) (nats)",
                        "test ELBO", "train s"], rows, "llllll"))
    report.emit(args.output)
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
