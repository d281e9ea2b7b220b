"""Train the MLP variational autoencoder of DESIGN.md on binarized MNIST.

The model is the one of the package's user story: a Dense encoder
(512-256 by default), `GaussianEncoderHead`, `KLRegularizer`,
`ReparameterizedSample`, a mirrored Dense decoder emitting Bernoulli logits,
trained by `keras_vae.VAEModel` (XLA on) with the ELBO or the IWAE bound on a
shuffled, batched, prefetched `tf.data` pipeline.

Data, the first that can be had:
  1. `--data FILE.npz` when given (keys `x_train`, `x_test`, optionally
     `y_train`, `y_test`: the layout of Keras' `mnist.npz`);
  2. MNIST via `keras.datasets.mnist.load_data()` (from the cache
     ~/.keras/datasets/mnist.npz, else downloaded with a short timeout);
  3. scikit-learn's bundled 8x8 digits (no download), a seeded 80/20 split.
Grey levels are scaled to [0, 1] and binarized once with a fixed seed:
stochastically by default (pixel ~ Bernoulli(grey level), the usual setting
for log-likelihoods in nats), or `--binarize threshold` (grey > 0.5).

It prints one line per epoch (loss, elbo, reconstruction, kl, and the same
on the test set as val_*), the training time and examples/s, then the test
importance-sampled log-likelihood (K = --num-samples) and test ELBO in nats,
and writes to --out: samples.png, reconstructions.png, interpolation.png,
results.json, vae.keras and saved_model/ (a SavedModel for TF Serving; skip
it with --no-export). An interrupted run resumes from --out/backup when
started again with the same --out.

Run from the repository root:
    python examples/mnist_vae.py                     # ~1-2 min on digits
    python examples/mnist_vae.py --quick --out /tmp/vae_smoke
    python examples/mnist_vae.py --objective iwae --k 5 --epochs 50
"""

import argparse
import json
import os
import pathlib
import shutil
import socket
import time

from _quiet_tf import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()  # TF's C++ start-up lines off (see _quiet_tf.py)

import h5py  # noqa: E402
import keras  # noqa: E402
# keras_vae.plotting draws with matplotlib: fail now, not after training.
import matplotlib  # noqa: E402, F401
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402

# Default epochs. Digits (15 steps/epoch): ~1 min on 2 CPU cores, the test
# ELBO stops improving by then. MNIST (600 steps/epoch): a usual budget.
DEFAULT_EPOCHS = {"mnist": 30, "npz": 30, "digits": 150}
QUICK_EPOCHS, QUICK_TEST_EXAMPLES, QUICK_NUM_SAMPLES = 2, 100, 50
DOWNLOAD_TIMEOUT_S = 15
DIGITS_TEST_FRACTION = 0.2
THRESHOLD = 0.5
NUM_GRID_SAMPLES, NUM_RECONSTRUCTIONS, GRID_COLUMNS = 64, 32, 8
NUM_INTERPOLATION_PAIRS, INTERPOLATION_STEPS = 8, 10
GRID_PAD, GRID_PAD_GREY = 1, 0.25  # pixels between tiles, their grey level


def positive_int(text):
    if int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected an int > 0, got {text}")
    return int(text)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--epochs", type=positive_int, help="training epochs (default: "
        "%(mnist)d on MNIST or --data, %(digits)d on digits)"
        % DEFAULT_EPOCHS)
    add("--batch-size", type=positive_int, default=100,
        help="examples per step (default: %(default)s)")
    add("--learning-rate", type=float, default=1e-3,
        help="Adam learning rate (default: %(default)s)")
    add("--latent-dim", type=positive_int, default=32,
        help="dimension of z (default: %(default)s)")
    add("--hidden", type=positive_int, nargs="+", default=[512, 256],
        help="encoder layer sizes, mirrored by the decoder (default: 512 256)")
    add("--objective", choices=("elbo", "iwae"), default="elbo",
        help="training objective (default: %(default)s)")
    add("--k", type=positive_int, default=1,
        help="samples of z per example per training step (default: 1)")
    add("--num-samples", type=positive_int, default=1000,
        help="importance samples K for the test log-likelihood "
        "(default: %(default)s)")
    add("--test-examples", type=positive_int,
        help="evaluate on the first N test examples only (default: all)")
    add("--binarize", choices=("stochastic", "threshold"),
        default="stochastic", help="pixel ~ Bernoulli(grey), seeded, or "
        f"grey > {THRESHOLD} (default: %(default)s)")
    add("--data", type=pathlib.Path, help="local .npz with x_train, x_test "
        "(mnist.npz layout), used instead of MNIST")
    add("--out", type=pathlib.Path, default=pathlib.Path("outputs/mnist_vae"),
        help="output directory (default: %(default)s)")
    add("--seed", type=int, default=0, help="seed of the split, "
        "binarization, shuffling, weights and noise (default: 0)")
    add("--no-export", action="store_true", help="skip the SavedModel")
    add("--quick", action="store_true", help=f"smoke test: {QUICK_EPOCHS} "
        f"epochs, {QUICK_TEST_EXAMPLES} test examples, K <= "
        f"{QUICK_NUM_SAMPLES}")
    return p.parse_args(argv)


# ------------------------------------------------------------------ data
def _load_mnist():
    """MNIST from the Keras cache or downloaded; raises if unavailable."""
    cached = pathlib.Path.home() / ".keras" / "datasets" / "mnist.npz"
    why = "MNIST (Keras cache)" if cached.exists() else "MNIST (downloaded)"
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # fail fast when offline
    try:
        (x_train, _), (x_test, _) = keras.datasets.mnist.load_data()
    finally:
        socket.setdefaulttimeout(old_timeout)
    return x_train, x_test, why


def _load_digits(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x = load_digits().data / 16.0  # grey levels 0..16
    return train_test_split(x, test_size=DIGITS_TEST_FRACTION,
                            random_state=seed)


def _to_unit_binary(x, method, rng):
    """Flattens, scales to [0, 1] and binarizes to float32 {0, 1}."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    if x.max() > 1.0:
        x = x / (255.0 if x.max() <= 255.0 else x.max())
    if method == "threshold":
        return (x > THRESHOLD).astype(np.float32)
    return (rng.random(x.shape) < x).astype(np.float32)


def load_data(data_path, binarize, seed):
    """Returns (name, x_train, x_test), binarized; prints what was used."""
    if data_path is not None:
        with np.load(data_path) as f:
            x_train, x_test = f["x_train"], f["x_test"]
        name, why = "npz", f"--data {data_path}"
    else:
        try:
            x_train, x_test, why = _load_mnist()
            name = "mnist"
        except Exception as e:  # no network, proxy, corrupt cache, ...
            x_train, x_test = _load_digits(seed)
            reason = str(e).rsplit(" -- ", 1)[-1][:80]
            name, why = "digits", (f"MNIST unavailable ({reason}): using "
                                   "scikit-learn digits 8x8")
    rng = np.random.default_rng(seed)
    x_train = _to_unit_binary(x_train, binarize, rng)
    x_test = _to_unit_binary(x_test, binarize, rng)
    print(f"Data: {why}, {len(x_train)} train / {len(x_test)} test, "
          f"{x_train.shape[1]} pixels, {binarize} binarization (seed {seed})")
    return name, x_train, x_test


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


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch (the first one includes XLA compilation)."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def discard_broken_backup(backup_dir):
    """Keras writes the backup in place: a run killed mid-write leaves a
    truncated file on which `fit` would fail. Start afresh then."""
    weights = backup_dir / "latest.weights.h5"
    if weights.exists() and not h5py.is_hdf5(weights):
        print(f"Warning: {weights} is incomplete; not resuming from it.")
        shutil.rmtree(backup_dir)


def check_finite(what, values):
    """Stops with a clear message instead of reporting NaN results."""
    bad = int(np.sum(~np.isfinite(values)))
    if bad:
        raise SystemExit(f"Error: {what} is not finite ({bad} of "
                         f"{np.size(values)} values are NaN/inf).")


def train(vae, x_train, x_test, epochs, args):
    """Fits, resumably; returns (epochs run, seconds, examples/s)."""
    backup = args.out / "backup"
    discard_broken_backup(backup)
    timer = EpochTimer()
    callbacks = [keras.callbacks.TerminateOnNaN(),
                 keras.callbacks.BackupAndRestore(str(backup)), timer]
    print(f"Training {epochs} epochs: objective={args.objective}, "
          f"k={args.k}, batch {args.batch_size}, latent {args.latent_dim}, "
          f"hidden {args.hidden}, XLA on")
    start = time.perf_counter()
    history = vae.fit(
        make_dataset(x_train, args.batch_size, args.seed, shuffle=True),
        validation_data=make_dataset(x_test, args.batch_size, args.seed,
                                     shuffle=False),
        epochs=epochs, callbacks=callbacks, verbose=2,
        shuffle=False)  # the pipeline shuffles; fit cannot shuffle a dataset
    seconds = time.perf_counter() - start
    epochs_run = len(history.epoch)  # fewer when resumed from a backup
    check_finite(f"the training loss (epoch {history.epoch[-1] + 1})",
                 history.history["loss"][-1])
    steady = timer.times[1:] or timer.times  # without XLA compilation
    per_second = len(x_train) * len(steady) / sum(steady)
    print(f"Trained {epochs_run} epochs in {seconds:.1f} s (first epoch "
          f"{timer.times[0]:.1f} s with XLA compilation), "
          f"{per_second:,.0f} training examples/s after it")
    return epochs_run, seconds, per_second


def evaluate(vae, x_test, num_samples):
    """Mean test log p(x) (importance sampled, K = num_samples) and ELBO."""
    log_px = vae.log_likelihood(x_test, num_samples=num_samples)
    elbo = vae.elbo(x_test, num_samples=1)
    check_finite("the test log-likelihood", log_px)
    check_finite("the test ELBO", elbo)
    log_px, elbo = float(np.mean(log_px)), float(np.mean(elbo))
    print(f"Test log-likelihood (K={num_samples}): {log_px:.2f} nats, "
          f"test ELBO: {elbo:.2f} nats, gap: {log_px - elbo:.2f} nats "
          f"({len(x_test)} test examples)")
    return log_px, elbo


# ---------------------------------------------------------------- images
def save_grid(images, path, ncols, title):
    """Tiles flat square images (N, side * side) in [0, 1] into one PNG,
    dark ink on white (`keras_vae.plotting.save_grid`)."""
    side = int(round(np.sqrt(images.shape[1])))
    keras_vae.plotting.save_grid(
        images, path, ncols, title=title, image_shape=(side, side),
        cmap="gray_r", pad=GRID_PAD, pad_value=GRID_PAD_GREY)


def save_pictures(vae, x_test, out, seed):
    save_grid(vae.sample(NUM_GRID_SAMPLES, seed=seed), out / "samples.png",
              GRID_COLUMNS, "samples from the prior (Bernoulli means)")
    x = x_test[:NUM_RECONSTRUCTIONS]
    recon = vae.reconstruct(x)
    rows = [block for i in range(0, len(x), GRID_COLUMNS)
            for block in (x[i:i + GRID_COLUMNS], recon[i:i + GRID_COLUMNS])]
    save_grid(np.concatenate(rows), out / "reconstructions.png",
              GRID_COLUMNS, "test inputs (rows 1, 3, ...) and their "
              "reconstructions (rows 2, 4, ...)")
    loc, _ = vae.encode(x_test[:2 * NUM_INTERPOLATION_PAIRS])
    t = np.linspace(0.0, 1.0, INTERPOLATION_STEPS)[None, :, None]
    z = (1.0 - t) * loc[0::2, None] + t * loc[1::2, None]  # (pairs, steps, L)
    means = vae.likelihood.mean(vae.decode(z.reshape(-1, loc.shape[1])))
    save_grid(np.asarray(means), out / "interpolation.png",
              INTERPOLATION_STEPS, "decoded linear interpolations between "
              "posterior means of test pairs")


# ------------------------------------------------------------------ main
def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    name, x_train, x_test = load_data(args.data, args.binarize, args.seed)
    epochs = args.epochs or (QUICK_EPOCHS if args.quick
                             else DEFAULT_EPOCHS[name])
    num_samples = args.num_samples
    if args.quick:
        num_samples = min(num_samples, QUICK_NUM_SAMPLES)
        x_test = x_test[:QUICK_TEST_EXAMPLES]
    x_test = x_test[:args.test_examples]

    vae = build_vae(x_train.shape[1], args.hidden, args.latent_dim, args.seed)
    vae.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                loss=keras_vae.losses.BernoulliNLL(),
                objective=args.objective, num_samples=args.k)
    epochs_run, seconds, per_second = train(vae, x_train, x_test, epochs,
                                            args)
    log_px, elbo = evaluate(vae, x_test, num_samples)

    save_pictures(vae, x_test, args.out, args.seed)
    vae.save(args.out / "vae.keras")
    if not args.no_export:
        vae.export_serving(str(args.out / "saved_model"))
    results = {
        "dataset": name, "train_examples": len(x_train),
        "test_examples": len(x_test), "binarize": args.binarize,
        "epochs": epochs_run, "objective": args.objective, "k": args.k,
        "latent_dim": args.latent_dim, "hidden": args.hidden,
        "batch_size": args.batch_size, "train_time_s": round(seconds, 2),
        "examples_per_s": round(per_second, 1), "num_samples": num_samples,
        "test_log_likelihood": log_px, "test_elbo": elbo,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print("Wrote samples.png, reconstructions.png, interpolation.png, "
          "vae.keras, results.json"
          f"{'' if args.no_export else ', saved_model/'} to {args.out}")
    return results


if __name__ == "__main__":
    main()
