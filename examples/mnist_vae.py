"""Train the MLP variational autoencoder of DESIGN.md on binarized MNIST.

The model is the one of the package's user story: a Dense encoder
(512-256 by default), `GaussianEncoderHead`, `KLRegularizer`,
`ReparameterizedSample`, a mirrored Dense decoder emitting Bernoulli logits,
trained by `keras_vae.VAEModel` (XLA on) with the ELBO or the IWAE bound on a
shuffled, batched, prefetched `tf.data` pipeline.

Data, first that can be had:
  1. `--data FILE.npz` when given (keys `x_train`, `x_test`, optionally
     `y_train`, `y_test`: the layout of Keras' `mnist.npz`);
  2. MNIST via `keras.datasets.mnist.load_data()` (cached in
     ~/.keras/datasets/mnist.npz, or downloaded with a short timeout);
  3. scikit-learn's bundled 8x8 digits (no download), 80/20 split.
Grey levels are scaled to [0, 1] and binarized once with a fixed seed:
stochastically (pixel ~ Bernoulli(grey level), the usual setting for
log-likelihoods in nats) or with `--binarize threshold` (grey > 0.5).

It prints one line per epoch (loss, elbo, reconstruction, kl and their
`val_` counterparts on the test set), the training time and examples/s,
then the test-set importance-sampled log-likelihood (K = --num-samples) and
the test ELBO, and writes to --out: samples.png, reconstructions.png,
interpolation.png, results.json, vae.keras and saved_model/ (a TF Serving
SavedModel; skip with --no-export). An interrupted run resumes from
--out/backup when started again with the same --out.

Run (from the repository root):
    python examples/mnist_vae.py                    # default run
    python examples/mnist_vae.py --quick --out /tmp/vae_smoke
    python examples/mnist_vae.py --objective iwae --k 5 --epochs 50
"""

import argparse
import json
import os
import pathlib
import socket
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow

import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Epochs when --epochs is not given: ~1-2 min on 2 CPU cores for the digits.
DEFAULT_EPOCHS = {"mnist": 30, "digits": 300}
QUICK_EPOCHS = 2
QUICK_TEST_EXAMPLES = 100
QUICK_NUM_SAMPLES = 50
DOWNLOAD_TIMEOUT_S = 15
DIGITS_TEST_FRACTION = 0.2
THRESHOLD = 0.5
NUM_GRID_SAMPLES = 64
NUM_RECONSTRUCTIONS = 32
GRID_COLUMNS = 8
NUM_INTERPOLATION_PAIRS = 8
INTERPOLATION_STEPS = 10


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default: %s by dataset)"
                   % DEFAULT_EPOCHS)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--hidden", type=int, nargs="+", default=[512, 256],
                   help="encoder layer sizes; the decoder mirrors them")
    p.add_argument("--objective", choices=("elbo", "iwae"), default="elbo")
    p.add_argument("--k", type=int, default=1,
                   help="samples of z per example in each training step")
    p.add_argument("--num-samples", type=int, default=1000,
                   help="importance samples K for the test log-likelihood")
    p.add_argument("--test-examples", type=int, default=None,
                   help="evaluate on the first N test examples (default all)")
    p.add_argument("--binarize", choices=("stochastic", "threshold"),
                   default="stochastic")
    p.add_argument("--data", type=pathlib.Path, default=None,
                   help="local .npz with x_train, x_test (mnist.npz layout)")
    p.add_argument("--out", type=pathlib.Path,
                   default=pathlib.Path("outputs/mnist_vae"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-export", action="store_true",
                   help="do not write the SavedModel")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: %d epochs, %d test examples, K=%d"
                   % (QUICK_EPOCHS, QUICK_TEST_EXAMPLES, QUICK_NUM_SAMPLES))
    return p.parse_args(argv)


# ------------------------------------------------------------------ data
def _load_mnist():
    """MNIST from the Keras cache, or downloaded; raises if unavailable."""
    cached = pathlib.Path.home() / ".keras" / "datasets" / "mnist.npz"
    if cached.exists():
        return keras.datasets.mnist.load_data(), "MNIST (Keras cache)"
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # fail fast when offline
    try:
        return keras.datasets.mnist.load_data(), "MNIST (downloaded)"
    finally:
        socket.setdefaulttimeout(old_timeout)


def _load_npz(path):
    with np.load(path) as f:
        return (f["x_train"], None), (f["x_test"], None)


def _load_digits(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test = train_test_split(
        digits.data / digits.data.max(), test_size=DIGITS_TEST_FRACTION,
        random_state=seed)
    return (x_train, None), (x_test, None)


def _to_unit_binary(x, method, rng):
    """Flattens, scales to [0, 1] and binarizes to float32 {0, 1}."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    if x.max() > 1.0:
        x = x / (255.0 if x.max() <= 255.0 else x.max())
    if method == "threshold":
        return (x > THRESHOLD).astype(np.float32)
    return (rng.random(x.shape) < x).astype(np.float32)


def load_data(data_path, binarize, seed):
    """Returns (name, x_train, x_test) binarized, and prints the choice."""
    if data_path is not None:
        (x_train, _), (x_test, _) = _load_npz(data_path)
        name, why = "npz", f"--data {data_path}"
    else:
        try:
            ((x_train, _), (x_test, _)), why = _load_mnist()
            name = "mnist"
        except Exception as e:  # no network, proxy, corrupt cache, ...
            (x_train, _), (x_test, _) = _load_digits(seed)
            name = "digits"
            why = (f"MNIST unavailable ({type(e).__name__}: "
                   f"{str(e)[:80]}): using scikit-learn digits 8x8")
    rng = np.random.default_rng(seed)
    x_train = _to_unit_binary(x_train, binarize, rng)
    x_test = _to_unit_binary(x_test, binarize, rng)
    print(f"Data: {why}, {len(x_train)} train / {len(x_test)} test, "
          f"{x_train.shape[1]} pixels, {binarize} binarization "
          f"(seed {seed})")
    return name, x_train, x_test


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of each epoch (the first includes XLA
    compilation)."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def make_dataset(x, batch_size, seed, shuffle):
    ds = tf.data.Dataset.from_tensor_slices(x)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------- model
def build_vae(input_dim, hidden, latent_dim, seed):
    """The MLP VAE of DESIGN.md: Dense encoder, mirrored Dense decoder."""
    x_in = keras.Input((input_dim,), name="x")
    h = x_in
    for units in hidden:
        h = keras.layers.Dense(units, activation="relu")(h)
    q = keras_vae.GaussianEncoderHead(latent_dim=latent_dim)(h)
    q = keras_vae.KLRegularizer()(q)
    h = keras_vae.ReparameterizedSample(seed=seed)(q)
    for units in reversed(hidden):
        h = keras.layers.Dense(units, activation="relu")(h)
    logits = keras.layers.Dense(
        keras_vae.losses.BernoulliNLL.params_size((input_dim,)))(h)
    return keras_vae.VAEModel(x_in, logits, name="mnist_vae")


# ---------------------------------------------------------------- images
def save_grid(images, path, ncols, title=None):
    """Tiles flat square images (N, side*side) into one PNG."""
    side = int(round(np.sqrt(images.shape[1])))
    nrows = -(-len(images) // ncols)
    pad = 1
    canvas = np.ones((nrows * (side + pad) + pad, ncols * (side + pad) + pad))
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        top, left = pad + r * (side + pad), pad + c * (side + pad)
        canvas[top:top + side, left:left + side] = img.reshape(side, side)
    fig, ax = plt.subplots(figsize=(ncols * 0.8, nrows * 0.8 + 0.4))
    ax.imshow(canvas, cmap="gray_r", vmin=0.0, vmax=1.0,
              interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def save_pictures(vae, x_test, out, seed):
    save_grid(vae.sample(NUM_GRID_SAMPLES, seed=seed), out / "samples.png",
              GRID_COLUMNS, "samples from the prior (Bernoulli means)")
    x = x_test[:NUM_RECONSTRUCTIONS]
    recon = vae.reconstruct(x)
    # Alternate rows: GRID_COLUMNS inputs, then their reconstructions.
    rows = [block for i in range(0, len(x), GRID_COLUMNS)
            for block in (x[i:i + GRID_COLUMNS], recon[i:i + GRID_COLUMNS])]
    save_grid(np.concatenate(rows), out / "reconstructions.png",
              GRID_COLUMNS, "test inputs (odd rows) / reconstructions")
    loc, _ = vae.encode(x_test[:2 * NUM_INTERPOLATION_PAIRS])
    t = np.linspace(0.0, 1.0, INTERPOLATION_STEPS)[None, :, None]
    z = (1.0 - t) * loc[0::2, None] + t * loc[1::2, None]
    means = vae.likelihood.mean(vae.decode(z.reshape(-1, loc.shape[1])))
    save_grid(np.asarray(means), out / "interpolation.png",
              INTERPOLATION_STEPS, "decoded interpolations between "
              "posterior means of test pairs")


# ------------------------------------------------------------------ main
def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    name, x_train, x_test = load_data(args.data, args.binarize, args.seed)
    epochs = args.epochs or (QUICK_EPOCHS if args.quick
                             else DEFAULT_EPOCHS.get(name, DEFAULT_EPOCHS["mnist"]))
    num_samples = (min(args.num_samples, QUICK_NUM_SAMPLES) if args.quick
                   else args.num_samples)
    n_test = QUICK_TEST_EXAMPLES if args.quick else args.test_examples
    x_test = x_test[:n_test] if n_test else x_test

    vae = build_vae(x_train.shape[1], args.hidden, args.latent_dim, args.seed)
    vae.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                loss=keras_vae.losses.BernoulliNLL(),
                objective=args.objective, num_samples=args.k)
    timer = EpochTimer()
    callbacks = [keras.callbacks.TerminateOnNaN(),
                 keras.callbacks.BackupAndRestore(str(args.out / "backup")),
                 timer]
    print(f"Training {epochs} epochs, objective={args.objective}, "
          f"k={args.k}, batch {args.batch_size}, latent {args.latent_dim}, "
          f"hidden {args.hidden}")
    start = time.perf_counter()
    history = vae.fit(
        make_dataset(x_train, args.batch_size, args.seed, shuffle=True),
        validation_data=make_dataset(x_test, args.batch_size, args.seed,
                                     shuffle=False),
        epochs=epochs, callbacks=callbacks, verbose=2,
        shuffle=False)  # the pipeline shuffles; fit cannot shuffle a dataset
    train_time = time.perf_counter() - start
    epochs_run = len(history.epoch)  # fewer when resumed from a backup
    # Throughput after the first epoch, which includes XLA compilation.
    steady = timer.times[1:] or timer.times
    per_second = len(x_train) * len(steady) / sum(steady)
    print(f"Trained {epochs_run} epochs in {train_time:.1f} s (first epoch "
          f"{timer.times[0]:.1f} s with XLA compilation), "
          f"{per_second:,.0f} training examples/s after it")

    log_px = vae.log_likelihood(x_test, num_samples=num_samples)
    elbo = vae.elbo(x_test, num_samples=1)
    print(f"Test log-likelihood (K={num_samples}): {log_px.mean():.2f} "
          f"nats, test ELBO: {elbo.mean():.2f} nats, gap: "
          f"{log_px.mean() - elbo.mean():.2f} nats "
          f"({len(x_test)} test examples)")

    save_pictures(vae, x_test, args.out, args.seed)
    vae.save(args.out / "vae.keras")
    if not args.no_export:
        vae.export_serving(str(args.out / "saved_model"))
    results = {
        "dataset": name, "train_examples": len(x_train),
        "test_examples": len(x_test), "binarize": args.binarize,
        "epochs": epochs_run, "objective": args.objective, "k": args.k,
        "latent_dim": args.latent_dim, "hidden": args.hidden,
        "batch_size": args.batch_size, "train_time_s": train_time,
        "examples_per_s": per_second, "num_samples": num_samples,
        "test_log_likelihood": float(log_px.mean()),
        "test_elbo": float(elbo.mean()),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"Wrote samples.png, reconstructions.png, interpolation.png, "
          f"vae.keras, results.json"
          f"{'' if args.no_export else ', saved_model/'} to {args.out}")
    return results


if __name__ == "__main__":
    main()
