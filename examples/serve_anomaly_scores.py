"""Anomaly scores from a served VAE: -log p(x) from the SavedModel alone.

A VAE trained on "normal" data assigns low likelihood to inputs unlike
them, so -log p(x) is an anomaly score. This example does it the way a
deployment would:

1. trains a small MLP VAE (`keras_vae.VAEModel`, Bernoulli likelihood) on
   normal data: scikit-learn's bundled 8x8 digits (no download), binarized
   (grey > 0.5), without one digit class (`--novel-digit`, default 9), which
   is kept aside as a "new kind of input";
2. exports it with `vae.export_serving(path, log_likelihood_samples=K)`;
3. scores requests in a **separate Python process that never imports
   keras_vae** (it is blocked there: `sys.modules["keras_vae"] = None`, so
   any attempt to import it fails). That process uses only TensorFlow and
   NumPy: `tf.saved_model.load(path).signatures["log_likelihood"](x=...)`,
   in batches, as a model server would. Its source is written to
   `--out/score_server.py`, to read or to reuse;
4. back in this process, compares the scores of held-out normal inputs with
   those of anomalous ones and prints, for each kind of anomaly, the mean
   score, the ROC AUC (normal vs anomalous; 0.5 = no separation, 1 =
   perfect) and the share flagged by a threshold set at the
   `--percentile`-th percentile of the scores of a separate calibration set
   of normal inputs (the false-alarm rate on the normal test inputs is
   printed next to it).

Anomalies (`--corruption`, default `all`):
  flip         each pixel of a normal test image flipped with prob. 0.1
  noise        independent pixels drawn with the training data's per-pixel
               frequencies (right amount of ink, no shape)
  invert       1 - x of a normal test image
  patch        a 3x3 block of ink stamped at a random place in a test image
  novel-digit  the images of the digit class left out of training

Scores are in nats: -log p(x), importance sampled with K samples fixed at
export (`--num-samples`). Outputs in `--out`: saved_model/, score_server.py,
requests.npz, scores.npz, scores.png (histograms), results.json.

Run from the repository root:
    python examples/serve_anomaly_scores.py              # ~1 min on 2 cores
    python examples/serve_anomaly_scores.py --quick --out /tmp/anomaly_smoke
    python examples/serve_anomaly_scores.py --corruption flip --epochs 300
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

from _quiet_tf import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()  # TF's C++ start-up lines off (see _quiet_tf.py)

import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

import keras_vae  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CORRUPTIONS = ("flip", "noise", "invert", "patch", "novel-digit")
DEFAULT_EPOCHS, QUICK_EPOCHS = 150, 2
DEFAULT_NUM_SAMPLES, QUICK_NUM_SAMPLES = 100, 10
HIDDEN, LATENT_DIM, BATCH_SIZE, LEARNING_RATE = (256, 128), 8, 64, 1e-3
THRESHOLD = 0.5             # binarization: grey level (in [0, 1]) > 0.5
CALIBRATION_FRACTION = 0.15  # of the normal images: sets the threshold
TEST_FRACTION = 0.15         # of the normal images: scored as "normal"
FLIP_PROB = 0.1
PATCH_SIDE = 3
SERVER_BATCH = 64            # rows per request to the served model
SERVER_TIMEOUT_S = 600
PRINT_EVERY = 25             # epochs between progress lines

# The "server": only TensorFlow and NumPy. keras_vae is made unimportable
# first, so loading or calling the SavedModel cannot quietly depend on it.
SERVER_SOURCE = textwrap.dedent(
    '''
    """Scores requests with a keras_vae SavedModel: TensorFlow + NumPy only.

    usage: python score_server.py SAVED_MODEL REQUESTS.npz SCORES.npz BATCH
    Each array in REQUESTS.npz (rows of model inputs) is sent in batches of
    BATCH rows to the `log_likelihood` signature; SCORES.npz gets, under the
    same name, the anomaly score -log p(x) of every row. Prints one JSON line
    of facts about the run.
    """
    import json
    import os
    import sys
    import time

    sys.modules["keras_vae"] = None  # any `import keras_vae` now fails
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    import numpy as np
    import tensorflow as tf
    import_s = time.perf_counter() - start

    model_dir, requests_path, scores_path, batch = sys.argv[1:5]
    batch = int(batch)
    start = time.perf_counter()
    model = tf.saved_model.load(model_dir)
    score_fn = model.signatures["log_likelihood"]
    load_s = time.perf_counter() - start
    _, input_specs = score_fn.structured_input_signature
    (out_name, out_spec), = score_fn.structured_outputs.items()
    x_spec = input_specs["x"]

    scores, seconds, calls = {}, 0.0, 0
    with np.load(requests_path) as requests:
        for name in requests.files:
            x = requests[name]
            parts = []
            for i in range(0, len(x), batch):
                rows = tf.constant(x[i:i + batch], dtype=x_spec.dtype)
                t = time.perf_counter()
                log_px = score_fn(x=rows)[out_name].numpy()
                seconds += time.perf_counter() - t
                calls += 1
                parts.append(-log_px)
            scores[name] = np.concatenate(parts).astype(np.float64)
    np.savez(scores_path, **scores)
    print(json.dumps({
        "signatures": sorted(model.signatures.keys()),
        "input": [x_spec.name, x_spec.dtype.name, x_spec.shape.as_list()],
        "output": [out_name, out_spec.dtype.name, out_spec.shape.as_list()],
        "import_s": import_s, "load_s": load_s, "score_s": seconds, "calls": calls,
        "rows": int(sum(len(s) for s in scores.values())),
        "keras_vae_imported": any(m.split(".")[0] == "keras_vae"
                                  and sys.modules[m] is not None
                                  for m in list(sys.modules)),
    }))
    '''
)


def positive_int(text):
    if int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected an int > 0, got {text}")
    return int(text)


def percentile(text):
    value = float(text)
    if not 0.0 < value < 100.0:
        raise argparse.ArgumentTypeError(f"expected 0 < p < 100, got {text}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--epochs", type=positive_int,
        help=f"training epochs (default: {DEFAULT_EPOCHS}; "
        f"{QUICK_EPOCHS} with --quick)")
    add("--num-samples", type=positive_int,
        help="importance samples K of the exported log_likelihood signature "
        f"(default: {DEFAULT_NUM_SAMPLES}; {QUICK_NUM_SAMPLES} with --quick)")
    add("--corruption", choices=CORRUPTIONS + ("all",), default="all",
        help="kind of anomalous input to score (default: %(default)s)")
    add("--novel-digit", type=int, choices=range(-1, 10), default=9,
        metavar="{-1,0..9}", help="digit class left out of training and "
        "used as the novel-digit anomaly; -1 trains on all ten (then there "
        "is no novel-digit anomaly) (default: %(default)s)")
    add("--percentile", type=percentile, default=99.0,
        help="threshold = this percentile of the calibration normals' "
        "scores (default: %(default)s)")
    add("--out", type=pathlib.Path,
        default=pathlib.Path("outputs/serve_anomaly_scores"),
        help="output directory (default: %(default)s)")
    add("--seed", type=int, default=0, help="seed of the split, weights, "
        "noise and corruptions (default: 0)")
    add("--quick", action="store_true", help=f"smoke test: {QUICK_EPOCHS} "
        f"epochs, K = {QUICK_NUM_SAMPLES}")
    args = p.parse_args(argv)
    if args.corruption == "novel-digit" and args.novel_digit < 0:
        p.error("--corruption novel-digit needs a --novel-digit in 0..9")
    return args


# ------------------------------------------------------------------ data
def load_digits(novel_digit, seed):
    """Binarized digits: (train, calibration, test) normals and novel ones."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    x = (digits.data / 16.0 > THRESHOLD).astype(np.float32)
    novel = digits.target == novel_digit
    normal = x[~novel][np.random.default_rng(seed).permutation(int(np.sum(~novel)))]
    n_cal = int(round(CALIBRATION_FRACTION * len(normal)))
    n_test = int(round(TEST_FRACTION * len(normal)))
    test, cal = normal[:n_test], normal[n_test:n_test + n_cal]
    train = normal[n_test + n_cal:]
    kept = "all ten digits" if novel_digit < 0 else (
        f"digits other than {novel_digit}")
    print(f"Data: scikit-learn digits 8x8, binarized (grey > {THRESHOLD}); "
          f"normal = {kept}: {len(train)} train / {len(cal)} calibration / "
          f"{len(test)} test; {int(np.sum(novel))} novel images")
    return train, cal, test, x[novel]


def corrupt(kind, x_test, x_train, x_novel, rng):
    """The anomalous inputs of one kind (float32 {0, 1} rows)."""
    if kind == "flip":
        return np.abs(x_test - (rng.random(x_test.shape) < FLIP_PROB)).astype(
            np.float32)
    if kind == "noise":
        freq = x_train.mean(axis=0)
        return (rng.random(x_test.shape) < freq).astype(np.float32)
    if kind == "invert":
        return 1.0 - x_test
    if kind == "patch":
        side = int(round(np.sqrt(x_test.shape[1])))
        images = x_test.reshape(-1, side, side).copy()
        for img in images:
            top, left = rng.integers(0, side - PATCH_SIDE + 1, size=2)
            img[top:top + PATCH_SIDE, left:left + PATCH_SIDE] = 1.0
        return images.reshape(len(x_test), -1)
    if kind == "novel-digit":
        return x_novel
    raise ValueError(kind)


DESCRIPTIONS = {
    "flip": f"{FLIP_PROB:.0%} of pixels flipped",
    "noise": "pixels ~ training frequencies",
    "invert": "inverted (1 - x)",
    "patch": f"{PATCH_SIDE}x{PATCH_SIDE} ink blot",
    "novel-digit": "unseen digit class",
}


# ----------------------------------------------------------------- model
def build_vae(input_dim, seed):
    x_in = keras.Input((input_dim,), name="x")
    h = x_in
    for units in HIDDEN:
        h = keras.layers.Dense(units, activation="relu")(h)
    q = keras_vae.GaussianEncoderHead(latent_dim=LATENT_DIM)(h)
    q = keras_vae.KLRegularizer()(q)
    h = keras_vae.ReparameterizedSample(seed=seed)(q)
    for units in reversed(HIDDEN):
        h = keras.layers.Dense(units, activation="relu")(h)
    logits = keras.layers.Dense(
        keras_vae.losses.BernoulliNLL.params_size((input_dim,)))(h)
    return keras_vae.VAEModel(x_in, logits, name="anomaly_vae")


class Progress(keras.callbacks.Callback):
    """One line every PRINT_EVERY epochs (and for the last one)."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % PRINT_EVERY == 0 or epoch + 1 == self.epochs:
            print(f"  epoch {epoch + 1}/{self.epochs}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in (logs or {}).items()), flush=True)


def train(x_train, epochs, seed):
    vae = build_vae(x_train.shape[1], seed)
    vae.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                loss=keras_vae.losses.BernoulliNLL())
    ds = (tf.data.Dataset.from_tensor_slices(x_train)
          .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
          .batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE))
    print(f"Training {epochs} epochs: MLP VAE {x_train.shape[1]}-"
          f"{'-'.join(map(str, HIDDEN))}-{LATENT_DIM}, Bernoulli, ELBO, "
          f"batch {BATCH_SIZE}, XLA on", flush=True)
    start = time.perf_counter()
    history = vae.fit(ds, epochs=epochs, verbose=0, shuffle=False, callbacks=[
        keras.callbacks.TerminateOnNaN(), Progress(epochs)])  # ds shuffles
    loss = history.history["loss"][-1]
    if not np.isfinite(loss):
        raise SystemExit(f"Error: the training loss is not finite ({loss}).")
    print(f"Trained in {time.perf_counter() - start:.1f} s")
    return vae


# ----------------------------------------------------------------- serve
def serve_scores(model_dir, requests, out):
    """Scores each array of `requests` in a process without keras_vae."""
    server = out / "score_server.py"
    server.write_text(SERVER_SOURCE)
    np.savez(out / "requests.npz", **requests)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(server), str(model_dir),
         str(out / "requests.npz"), str(out / "scores.npz"),
         str(SERVER_BATCH)],
        capture_output=True, text=True, env=env, timeout=SERVER_TIMEOUT_S,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit("Error: the scoring process failed:\n"
                         + proc.stdout[-2000:] + proc.stderr[-4000:])
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    if facts["keras_vae_imported"]:
        raise SystemExit("Error: the scoring process imported keras_vae.")
    with np.load(out / "scores.npz") as f:
        scores = {name: f[name] for name in f.files}
    print(f"Scoring process (TensorFlow + NumPy, keras_vae blocked): "
          f"{wall:.1f} s in all: import tensorflow {facts['import_s']:.1f} s, "
          f"tf.saved_model.load {facts['load_s']:.1f} s,"
          f" {facts['rows']} rows in {facts['calls']} calls of <= "
          f"{SERVER_BATCH} rows, {1000 * facts['score_s'] / facts['calls']:.1f}"
          f" ms per call; signature log_likelihood: {facts['input']} -> "
          f"{facts['output']}")
    for name, s in scores.items():
        if not np.all(np.isfinite(s)):
            raise SystemExit(f"Error: {np.sum(~np.isfinite(s))} scores of "
                             f"'{name}' are not finite.")
    return scores, facts, wall


# --------------------------------------------------------------- report
def separation(scores, kinds, pct):
    threshold = float(np.percentile(scores["calibration"], pct))
    normal = scores["normal"]
    rows = [{"inputs": "normal (test)", "n": len(normal),
             "mean_score": float(np.mean(normal)), "auc": None,
             "flagged": float(np.mean(normal > threshold))}]
    for kind in kinds:
        s = scores[kind]
        labels = np.r_[np.zeros(len(normal)), np.ones(len(s))]
        rows.append({
            "inputs": f"{kind} ({DESCRIPTIONS[kind]})", "n": len(s),
            "mean_score": float(np.mean(s)),
            "auc": float(roc_auc_score(labels, np.r_[normal, s])),
            "flagged": float(np.mean(s > threshold)),
        })
    return threshold, rows


def print_table(threshold, rows, pct, n_cal, k):
    print(f"\nAnomaly score = -log p(x) in nats (importance sampled in the "
          f"served model, K = {k}).\nThreshold = {pct:g}th percentile of the "
          f"scores of {n_cal} calibration normals = {threshold:.2f} nats.\n")
    print("| inputs | n | mean score | ROC AUC vs normal | flagged |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        auc = "-" if r["auc"] is None else f"{r['auc']:.3f}"
        flag = f"{100 * r['flagged']:.1f}%"
        if r["auc"] is None:
            flag += " (false alarms)"
        print(f"| {r['inputs']} | {r['n']} | {r['mean_score']:.2f} | {auc} "
              f"| {flag} |")


def save_histograms(scores, kinds, threshold, path):
    fig, ax = plt.subplots(figsize=(7, 3.5))
    # Log-spaced bins: inverted images score ~10x higher than the rest.
    # (-log p(x) >= 0 for binary data; the clip only guards MC noise.)
    everything = np.concatenate([scores[n] for n in ["normal"] + kinds])
    low = max(float(everything.min()), 0.1)
    bins = np.geomspace(low, max(float(everything.max()), 2 * low), 60)
    for name in ["normal"] + kinds:
        ax.hist(np.clip(scores[name], low, None), bins=bins, alpha=0.5,
                label=name, weights=np.full(len(scores[name]),
                                            1.0 / len(scores[name])))
    ax.axvline(threshold, color="k", linestyle="--", label="threshold")
    ax.set_xscale("log")
    ax.set_xlabel("anomaly score -log p(x) (nats, log scale)")
    ax.set_ylabel("fraction of the inputs")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


# ------------------------------------------------------------------ main
def main(argv=None):
    args = parse_args(argv)
    run_start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS)
    k = args.num_samples or (QUICK_NUM_SAMPLES if args.quick
                             else DEFAULT_NUM_SAMPLES)
    x_train, x_cal, x_test, x_novel = load_digits(args.novel_digit, args.seed)
    kinds = list(CORRUPTIONS) if args.corruption == "all" else [args.corruption]
    if args.novel_digit < 0 and "novel-digit" in kinds:
        kinds.remove("novel-digit")

    vae = train(x_train, epochs, args.seed)
    model_dir = args.out / "saved_model"
    start = time.perf_counter()
    vae.export_serving(str(model_dir), log_likelihood_samples=k)
    print(f"Exported {model_dir} (log_likelihood with K = {k}) in "
          f"{time.perf_counter() - start:.1f} s")

    rng = np.random.default_rng(args.seed + 1)
    requests = {"calibration": x_cal, "normal": x_test}
    for kind in kinds:
        requests[kind] = corrupt(kind, x_test, x_train, x_novel, rng)
    scores, facts, serve_s = serve_scores(model_dir, requests, args.out)

    # Sanity check against the in-memory model (independent noise, so the
    # two estimates of the mean differ by Monte Carlo error only).
    local = -vae.log_likelihood(x_test, num_samples=k)
    print(f"Check: mean score of the normal test inputs, served "
          f"{np.mean(scores['normal']):.2f} vs in-memory "
          f"vae.log_likelihood {np.mean(local):.2f} nats (K = {k})")

    threshold, rows = separation(scores, kinds, args.percentile)
    print_table(threshold, rows, args.percentile, len(x_cal), k)
    save_histograms(scores, kinds, threshold, args.out / "scores.png")
    results = {
        "epochs": epochs, "num_samples": k, "seed": args.seed,
        "novel_digit": args.novel_digit, "percentile": args.percentile,
        "threshold": threshold, "rows": rows,
        "in_memory_mean_normal_score": float(np.mean(local)),
        "server": facts, "serve_wall_s": round(serve_s, 2),
        "run_time_s": round(time.perf_counter() - run_start, 1),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nWrote saved_model/, score_server.py, requests.npz, scores.npz, "
          f"scores.png, results.json to {args.out} "
          f"(run time {results['run_time_s']:.0f} s)")
    return results


if __name__ == "__main__":
    main()
