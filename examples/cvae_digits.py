"""Train a conditional VAE, q(z | x, y) and p(x | z, y), on 8x8 digits.

The model of `mnist_vae.py` with the class label y as a second input: the
one-hot label is concatenated to the pixels before the encoder and to z
before the decoder, so `keras_vae.VAEModel([x, y], logits)` reads the graph
as encoder [x, y] -> (loc, scale), decoder [z, y] -> Bernoulli logits:

```none
q(z | x, y) = N(loc(x, y), diag(scale(x, y)^2)),   p(z) = N(0, I)
p(x | z, y) = prod_i Bernoulli(x_i; sigmoid(logits(z, y))_i)
ELBO(x | y) = E_q[log p(x | z, y)] - KL(q(z | x, y) || p(z)) <= log p(x | y)
```

Data: scikit-learn's bundled 8x8 digits (no download) with the seeded
80/20 split of `mnist_vae.py` (the same 360 test images), or `--data
FILE.npz` with `x_train`, `y_train`, `x_test`, `y_test` (the layout of
Keras' `mnist.npz`). Grey levels are scaled to [0, 1] and binarized once
with a fixed seed, as in `mnist_vae.py`. Training is `VAEModel.fit` (XLA
on) on a shuffled, batched, prefetched `tf.data` pipeline of `([x, y], x)`.

It prints one line per epoch, then the test log-likelihood log p(x | y)
(importance sampled, K = --num-samples) and the test ELBO in nats, and a
check that the condition works: a logistic-regression classifier trained
on the real training digits labels `--eval-samples` generated digits per
class; the "conditional accuracy" is the fraction it assigns to the class
they were generated for (chance: 0.1). It writes to --out:
samples_by_class.png (row c: --columns samples for class c; column j uses
the same z in every row, so a column shows one "style" across classes),
results.json and cvae.keras, and ends with a table of the results.

Run from the repository root:
    python examples/cvae_digits.py                  # ~1 min on 2 CPU cores
    python examples/cvae_digits.py --quick --out /tmp/cvae_smoke
    python examples/cvae_digits.py --data mnist.npz --epochs 20
"""

import argparse
import json
import os
import pathlib
import time

from _quiet_tf import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()  # TF's C++ start-up lines off (see _quiet_tf.py)

import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402
# Shared with the main example (same directory, so importable when run).
from mnist_vae import EpochTimer, check_finite, positive_int  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NUM_CLASSES = 10
# Default epochs. Digits (15 steps/epoch): the test ELBO stops improving
# by ~150 epochs. MNIST (600 steps/epoch): a usual budget.
DEFAULT_EPOCHS = {"digits": 150, "npz": 30}
# Quick mode: enough epochs for class-specific samples (a smoke test that
# still checks the condition), a test subset and a small K.
QUICK_EPOCHS, QUICK_TEST_EXAMPLES, QUICK_NUM_SAMPLES = 30, 100, 50
DIGITS_TEST_FRACTION = 0.2
CLASSIFIER_MAX_TRAIN = 10000  # examples for the logistic regression
GRID_PAD, GRID_PAD_GREY, GRID_ZOOM = 1, 0.25, 4  # PNG tile spacing, scale


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--epochs", type=positive_int, help="training epochs (default: "
        "%(digits)d on digits, %(npz)d with --data)" % DEFAULT_EPOCHS)
    add("--batch-size", type=positive_int, default=100,
        help="examples per step (default: %(default)s)")
    add("--learning-rate", type=float, default=1e-3,
        help="Adam learning rate (default: %(default)s)")
    add("--latent-dim", type=positive_int, default=16,
        help="dimension of z (default: %(default)s)")
    add("--hidden", type=positive_int, nargs="+", default=[512, 256],
        help="encoder layer sizes, mirrored by the decoder (default: 512 256)")
    add("--num-samples", type=positive_int, default=1000,
        help="importance samples K for the test log p(x | y) "
        "(default: %(default)s)")
    add("--test-examples", type=positive_int,
        help="evaluate on the first N test examples only (default: all)")
    add("--columns", type=positive_int, default=10,
        help="samples per class in the PNG (default: %(default)s)")
    add("--eval-samples", type=positive_int, default=100,
        help="generated samples per class for the conditional accuracy "
        "(default: %(default)s)")
    add("--data", type=pathlib.Path, help="local .npz with x_train, "
        "y_train, x_test, y_test (mnist.npz layout), used instead of digits")
    add("--out", type=pathlib.Path,
        default=pathlib.Path("outputs/cvae_digits"),
        help="output directory (default: %(default)s)")
    add("--seed", type=int, default=0, help="seed of the split, "
        "binarization, shuffling, weights, noise and samples (default: 0)")
    add("--quick", action="store_true", help=f"smoke test: {QUICK_EPOCHS} "
        f"epochs, {QUICK_TEST_EXAMPLES} test examples, K <= "
        f"{QUICK_NUM_SAMPLES}")
    return p.parse_args(argv)


# ------------------------------------------------------------------ data
def _to_unit(x_train, x_test):
    """Flattens and scales grey levels to float32 in [0, 1] (one scale)."""
    x_train, x_test = (np.asarray(x, np.float32).reshape(len(x), -1)
                       for x in (x_train, x_test))
    top = float(max(x_train.max(), x_test.max()))
    scale = 1.0 if top <= 1.0 else 16.0 if top <= 16.0 else max(255.0, top)
    return x_train / scale, x_test / scale  # digits: 0..16, MNIST: 0..255


def load_data(data_path, seed):
    """Returns (name, grey, binary, labels), each a (train, test) pair.

    `grey` are the grey levels in [0, 1] (the classifier's input), `binary`
    their seeded stochastic binarization (pixel ~ Bernoulli(grey), the
    VAE's data), `labels` integer classes.
    """
    if data_path is not None:
        with np.load(data_path) as f:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
            if missing:
                raise SystemExit(f"Error: {data_path} lacks {sorted(missing)}"
                                 " (a conditional VAE needs the labels).")
            x_train, x_test = f["x_train"], f["x_test"]
            y_train, y_test = f["y_train"], f["y_test"]
        name, why = "npz", f"--data {data_path}"
    else:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        # The split of mnist_vae.py (same seed -> same test images).
        x_train, x_test, y_train, y_test = train_test_split(
            digits.data, digits.target, test_size=DIGITS_TEST_FRACTION,
            random_state=seed)
        name, why = "digits", "scikit-learn digits 8x8"
    grey = _to_unit(x_train, x_test)
    rng = np.random.default_rng(seed)  # train first, then test: as mnist_vae
    binary = tuple((rng.random(g.shape) < g).astype(np.float32) for g in grey)
    labels = tuple(np.asarray(y, np.int64).reshape(-1)
                   for y in (y_train, y_test))
    for y in labels:
        if y.min() < 0 or y.max() >= NUM_CLASSES:
            raise SystemExit(f"Error: labels must be 0..{NUM_CLASSES - 1}.")
    print(f"Data: {why}, {len(labels[0])} train / {len(labels[1])} test, "
          f"{grey[0].shape[1]} pixels, stochastic binarization (seed {seed})")
    return name, grey, binary, labels


def one_hot(labels):
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def make_dataset(x, y_onehot, batch_size, seed, shuffle):
    """`([x, y], x)` batches: inputs are pixels and label, target pixels."""
    ds = tf.data.Dataset.from_tensor_slices(((x, y_onehot), x))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------- model
def build_cvae(input_dim, hidden, latent_dim, seed):
    """Dense encoder on [x, y], mirrored Dense decoder on [z, y]."""
    x_in = keras.Input((input_dim,), name="x")
    y_in = keras.Input((NUM_CLASSES,), name="label")
    h = keras.layers.Concatenate(name="x_and_label")([x_in, y_in])
    for units in hidden:
        h = keras.layers.Dense(units, activation="relu")(h)
    q = keras_vae.GaussianEncoderHead(latent_dim=latent_dim)(h)
    q = keras_vae.KLRegularizer()(q)
    z = keras_vae.ReparameterizedSample(seed=seed)(q)
    h = keras.layers.Concatenate(name="z_and_label")([z, y_in])
    for units in reversed(hidden):
        h = keras.layers.Dense(units, activation="relu")(h)
    logits = keras.layers.Dense(
        keras_vae.losses.BernoulliNLL.params_size((input_dim,)))(h)
    return keras_vae.VAEModel([x_in, y_in], logits, name="cvae_digits")



def train(vae, train_data, test_data, epochs, args):
    """Fits; returns the training time in seconds."""
    timer = EpochTimer()
    print(f"Training {epochs} epochs: batch {args.batch_size}, latent "
          f"{args.latent_dim}, hidden {args.hidden}, XLA on")
    start = time.perf_counter()
    history = vae.fit(
        make_dataset(*train_data, args.batch_size, args.seed, shuffle=True),
        validation_data=make_dataset(*test_data, args.batch_size, args.seed,
                                     shuffle=False),
        epochs=epochs, callbacks=[keras.callbacks.TerminateOnNaN(), timer],
        verbose=2, shuffle=False)  # the pipeline shuffles
    seconds = time.perf_counter() - start
    check_finite("the training loss", history.history["loss"][-1])
    print(f"Trained {epochs} epochs in {seconds:.1f} s (first epoch "
          f"{timer.times[0]:.1f} s with XLA compilation)")
    return seconds


def evaluate(vae, x_test, y_test_onehot, num_samples):
    """Mean test log p(x | y) (importance sampled) and ELBO, in nats."""
    inputs = [x_test, y_test_onehot]
    log_px = vae.log_likelihood(inputs, num_samples=num_samples, y=x_test)
    elbo = vae.elbo(inputs, num_samples=1, y=x_test)
    check_finite("the test log-likelihood", log_px)
    check_finite("the test ELBO", elbo)
    log_px, elbo = float(np.mean(log_px)), float(np.mean(elbo))
    print(f"Test log-likelihood log p(x|y) (K={num_samples}): {log_px:.2f} "
          f"nats, test ELBO: {elbo:.2f} nats, gap: {log_px - elbo:.2f} nats "
          f"({len(x_test)} test examples)")
    return log_px, elbo


# -------------------------------------------------- conditional accuracy
def train_classifier(grey_train, labels_train, grey_test, labels_test, seed):
    """Logistic regression on real grey-level digits; prints its accuracy."""
    from sklearn.linear_model import LogisticRegression

    n = min(len(grey_train), CLASSIFIER_MAX_TRAIN)
    clf = LogisticRegression(max_iter=2000, random_state=seed)
    clf.fit(grey_train[:n], labels_train[:n])
    accuracy = float(clf.score(grey_test, labels_test))
    print(f"Classifier (logistic regression on {n} real training digits): "
          f"test accuracy {accuracy:.3f}")
    return clf, accuracy


def generate_by_class(vae, n, seed):
    """(10, n, pixels) likelihood means; the same z for every class."""
    return np.stack([vae.sample(n, condition=one_hot([c]), seed=seed)
                     for c in range(NUM_CLASSES)])


def conditional_accuracy(vae, clf, n, seed):
    """Per class, the fraction of n generated digits `clf` labels as it.

    The generated digits are the Bernoulli means, i.e. grey levels: the
    classifier's input domain.
    """
    samples = generate_by_class(vae, n, seed)
    predicted = clf.predict(samples.reshape(-1, samples.shape[-1]))
    per_class = (predicted.reshape(NUM_CLASSES, n)
                 == np.arange(NUM_CLASSES)[:, None]).mean(axis=1)
    print(f"Conditional accuracy ({n} samples per class, chance "
          f"{1 / NUM_CLASSES:.2f}): {per_class.mean():.3f}; per class: "
          + " ".join(f"{c}:{a:.2f}" for c, a in enumerate(per_class)))
    return float(per_class.mean()), [float(a) for a in per_class]


# ---------------------------------------------------------------- images
def save_class_grid(samples, path):
    """Writes (rows, cols, side * side) images in [0, 1] as one PNG.

    Pixel-exact (no figure margins): tiles of side x side pixels separated
    by GRID_PAD grey pixels (`keras_vae.plotting.image_grid`), the whole
    scaled by GRID_ZOOM; ink is dark.
    """
    rows, cols, pixels = samples.shape
    side = int(round(np.sqrt(pixels)))
    canvas = keras_vae.plotting.image_grid(
        samples.reshape(rows * cols, pixels), ncols=cols,
        image_shape=(side, side), pad=GRID_PAD, pad_value=GRID_PAD_GREY)
    canvas = np.kron(canvas, np.ones((GRID_ZOOM, GRID_ZOOM)))
    plt.imsave(path, canvas, cmap="gray_r", vmin=0.0, vmax=1.0)


# ------------------------------------------------------------------ main
def print_table(rows):
    width = max(len(k) for k, _ in rows)
    print("\nResults")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    name, grey, (x_train, x_test), (y_train, y_test) = load_data(
        args.data, args.seed)
    epochs = args.epochs or (QUICK_EPOCHS if args.quick
                             else DEFAULT_EPOCHS[name])
    num_samples = args.num_samples
    n_test = args.test_examples
    if args.quick:
        num_samples = min(num_samples, QUICK_NUM_SAMPLES)
        n_test = min(n_test or QUICK_TEST_EXAMPLES, QUICK_TEST_EXAMPLES)
    x_eval, y_eval = x_test[:n_test], one_hot(y_test[:n_test])

    vae = build_cvae(x_train.shape[1], args.hidden, args.latent_dim,
                     args.seed)
    vae.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                loss=keras_vae.losses.BernoulliNLL())  # XLA on by default
    seconds = train(vae, (x_train, one_hot(y_train)), (x_eval, y_eval),
                    epochs, args)
    log_px, elbo = evaluate(vae, x_eval, y_eval, num_samples)

    clf, clf_accuracy = train_classifier(grey[0], y_train, grey[1], y_test,
                                         args.seed)
    # Seeds: args.seed for the PNG, args.seed + 1 for the accuracy draws.
    cond_acc, per_class = conditional_accuracy(vae, clf, args.eval_samples,
                                               args.seed + 1)
    save_class_grid(generate_by_class(vae, args.columns, args.seed),
                    args.out / "samples_by_class.png")
    vae.save(args.out / "cvae.keras")
    results = {
        "dataset": name, "train_examples": len(x_train),
        "test_examples": len(x_eval), "epochs": epochs,
        "latent_dim": args.latent_dim, "hidden": args.hidden,
        "batch_size": args.batch_size, "seed": args.seed,
        "train_time_s": round(seconds, 2), "num_samples": num_samples,
        "test_log_likelihood": log_px, "test_elbo": elbo,
        "classifier_test_accuracy": clf_accuracy,
        "eval_samples_per_class": args.eval_samples,
        "conditional_accuracy": cond_acc,
        "conditional_accuracy_per_class": per_class,
        "grid": {"rows": NUM_CLASSES, "columns": args.columns,
                 "pad": GRID_PAD, "zoom": GRID_ZOOM},
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"Wrote samples_by_class.png, cvae.keras, results.json to "
          f"{args.out}")
    print_table([
        ("data", (f"{name}, {len(x_train)} train / {len(x_eval)} test, "
                  f"{epochs} epochs, seed {args.seed}")),
        (f"test log p(x|y), K={num_samples}", f"{log_px:.2f} nats"),
        ("test ELBO", f"{elbo:.2f} nats"),
        ("conditional accuracy", (f"{cond_acc:.3f} (chance 0.100; "
                                  f"{args.eval_samples} samples per class)")),
        ("classifier on real test", f"{clf_accuracy:.3f}"),
        ("training time", f"{seconds:.1f} s"),
    ])
    return results


if __name__ == "__main__":
    main()
