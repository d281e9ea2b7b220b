"""Latency of the exported SavedModel's signatures, and of the in-memory model.

The MLP VAE of DESIGN.md (784-512-256-32, mirrored decoder, Bernoulli
likelihood) is trained briefly on synthetic binary data (`--epochs`, 0 =
untrained: the latency does not depend on the weights), exported with
`vae.export_serving(path, log_likelihood_samples=K)` and reloaded with
`tf.saved_model.load`. Each signature is then timed at each batch size
(default 1 and 256):

| call | request |
| --- | --- |
| `serving_default` | `x` (B, 784) -> `reconstruction` |
| `encode` | `x` -> `loc`, `scale` |
| `decode` | `z` (B, 32) -> `params`, `mean` |
| `sample` | `num_samples` = B, `seed` -> `samples` |
| `log_likelihood` | `x` -> `log_likelihood` (K importance samples per row) |

and, for reference, the in-memory model's user-facing methods on the same
inputs: `vae.predict(x, batch_size=B)`, `vae.reconstruct`, `vae.encode`,
`vae.decode`, `vae.sample(B)` and `vae.log_likelihood(x, num_samples=K,
batch_size=B)` (XLA-compiled), plus a direct eager `vae(x)` call.

Method: the first call of each is timed alone ("first call": tracing, XLA
compilation, lazy loading), then `--warmup` untimed calls, then up to
`--repeats` timed calls, stopped early after `--budget` seconds per call and
batch (at least `MIN_REPEATS`). The calls take turns in `ROUNDS` rounds so
that load from other processes falls on all of them alike. Every timed call
includes turning its outputs into NumPy arrays (what a server returns).
Latency percentiles p50/p90/p99 are over the timed calls (with fewer than
100 calls, p99 is interpolated between the largest ones).

It also checks each signature's output names, dtypes and shapes, compares
the signatures' outputs with the in-memory methods, and whether two
`log_likelihood` calls on the same input agree.

Usage:

```none
python benchmarks/serving_latency.py              # default, ~2-3 min on 2 cores
python benchmarks/serving_latency.py --quick      # smoke test
python benchmarks/serving_latency.py --batch-sizes 1 32 256 --output lat.md
```
"""

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402
from common import cpu_model  # noqa: E402

# ------------------------------------------------------------ configuration
INPUT_DIM = 784
HIDDEN_UNITS = (512, 256)          # encoder; the decoder mirrors it
LATENT_DIM = 32
LEARNING_RATE = 1e-3
TRAIN_BATCH = 128
DATA_SEED, MODEL_SEED, REQUEST_SEED = 0, 1, 2
DATA_FACTORS = 16                  # latent factors behind the synthetic data
ROUNDS = 5                         # calls take turns in this many rounds
MIN_REPEATS = 5                    # timed calls per cell, whatever the budget
BUSY_LOAD_PER_CORE = 0.25          # 1-min load per core above which we warn

DEFAULTS = {"epochs": 1, "examples": 4096, "batch_sizes": (1, 256),
            "ll_samples": 100, "warmup": 3, "repeats": 200, "budget": 2.0}
QUICK = {"epochs": 1, "examples": 512, "batch_sizes": (1, 16),
         "ll_samples": 10, "warmup": 1, "repeats": 10, "budget": 0.3}

SIGNATURES = ("serving_default", "encode", "decode", "sample",
              "log_likelihood")


# ------------------------------------------------------------------ machine
def load_line(when):
    try:
        load = os.getloadavg()
    except OSError:
        return f"load average {when}: unavailable"
    line = (f"load average {when} (1/5/15 min): "
            + " ".join(f"{v:.2f}" for v in load))
    if load[0] > BUSY_LOAD_PER_CORE * (os.cpu_count() or 1):
        line += " -- the machine is busy: timings are noisy"
    return line


def machine_lines():
    threads = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    return [
        f"date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"cpu: {cpu_model()}, {os.cpu_count()} logical cores; TF intra/inter"
        f"-op threads: {threads[0]}/{threads[1]} (0 = TF's default)",
        f"python {platform.python_version()}, tensorflow {tf.__version__}, "
        f"keras {keras.__version__}, keras_vae {keras_vae.__version__}",
        f"platform: {platform.platform()}",
        load_line("at the start"),
    ]


# -------------------------------------------------------------------- model
def synthetic_binary_data(num_examples, seed=DATA_SEED):
    """Binary vectors from a random low-rank logistic model (learnable)."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(num_examples, DATA_FACTORS))
    weights = rng.normal(scale=0.5, size=(DATA_FACTORS, INPUT_DIM))
    probs = 1.0 / (1.0 + np.exp(-(factors @ weights)))
    return (rng.random(probs.shape) < probs).astype(np.float32)


def build_vae():
    x_in = keras.Input((INPUT_DIM,), name="x")
    h = x_in
    for units in HIDDEN_UNITS:
        h = keras.layers.Dense(units, activation="relu")(h)
    q = keras_vae.GaussianEncoderHead(latent_dim=LATENT_DIM)(h)
    q = keras_vae.KLRegularizer()(q)
    h = keras_vae.ReparameterizedSample(seed=MODEL_SEED)(q)
    for units in reversed(HIDDEN_UNITS):
        h = keras.layers.Dense(units, activation="relu")(h)
    logits = keras.layers.Dense(INPUT_DIM)(h)
    vae = keras_vae.VAEModel(x_in, logits, name="mlp_vae")
    vae.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                loss=keras_vae.losses.BernoulliNLL())
    return vae


def train(vae, x, epochs):
    if epochs == 0:
        return 0.0
    ds = (tf.data.Dataset.from_tensor_slices(x).shuffle(len(x), seed=DATA_SEED)
          .batch(TRAIN_BATCH).prefetch(tf.data.AUTOTUNE))
    start = time.perf_counter()
    vae.fit(ds, epochs=epochs, verbose=0, shuffle=False)
    return time.perf_counter() - start


# ------------------------------------------------------------------ calls
def to_numpy(out):
    if isinstance(out, dict):
        return {k: np.asarray(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [np.asarray(v) for v in out]
    return np.asarray(out)


def make_calls(sig, vae, batch, requests, k):
    """(label, kind, fn) for one batch size; each fn returns NumPy output."""
    x, z = requests["x"][:batch], requests["z"][:batch]
    x_t, z_t = tf.constant(x), tf.constant(z)
    n_t, seed_t = tf.constant(batch, tf.int32), tf.constant(7, tf.int32)
    return [
        ("serving_default", "SavedModel",
         lambda: to_numpy(sig["serving_default"](x=x_t))),
        ("encode", "SavedModel", lambda: to_numpy(sig["encode"](x=x_t))),
        ("decode", "SavedModel", lambda: to_numpy(sig["decode"](z=z_t))),
        ("sample", "SavedModel",
         lambda: to_numpy(sig["sample"](num_samples=n_t, seed=seed_t))),
        ("log_likelihood", "SavedModel",
         lambda: to_numpy(sig["log_likelihood"](x=x_t))),
        ("vae.predict(x)", "in-memory",
         lambda: vae.predict(x, batch_size=batch, verbose=0)),
        ("vae(x) eager call", "in-memory",
         lambda: to_numpy(vae(x_t, training=False))),
        ("vae.reconstruct(x)", "in-memory",
         lambda: vae.reconstruct(x, batch_size=batch)),
        ("vae.encode(x)", "in-memory",
         lambda: vae.encode(x, batch_size=batch)),
        ("vae.decode(z)", "in-memory",
         lambda: vae.decode(z, batch_size=batch)),
        ("vae.sample(n)", "in-memory", lambda: vae.sample(batch, seed=7)),
        (f"vae.log_likelihood(x, K={k})", "in-memory",
         lambda: vae.log_likelihood(x, num_samples=k, batch_size=batch)),
    ]


def time_calls(calls, warmup, repeats, budget):
    """First-call time and the timed calls' latencies (s) of each call."""
    first, times = {}, {label: [] for label, _, _ in calls}
    for label, _, fn in calls:
        start = time.perf_counter()
        fn()
        first[label] = time.perf_counter() - start
        for _ in range(warmup):
            fn()
    per_round = max(1, -(-repeats // ROUNDS))
    for _ in range(ROUNDS):
        for label, _, fn in calls:
            spent = sum(times[label])
            for _ in range(per_round):
                done = len(times[label])
                if done >= repeats or (spent >= budget and done >= MIN_REPEATS):
                    break
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
                times[label].append(elapsed)
                spent += elapsed
    return first, times


# ----------------------------------------------------------------- checks
def signature_checks(sig, vae, requests, k):
    """Output names/dtypes/shapes and agreement with the in-memory model."""
    b = 4
    x, z = requests["x"][:b], requests["z"][:b]
    expected = {
        "serving_default": ({"reconstruction": (b, INPUT_DIM)}, dict(x=x)),
        "encode": ({"loc": (b, LATENT_DIM), "scale": (b, LATENT_DIM)},
                   dict(x=x)),
        "decode": ({"params": (b, INPUT_DIM), "mean": (b, INPUT_DIM)},
                   dict(z=z)),
        "sample": ({"samples": (b, INPUT_DIM)},
                   dict(num_samples=tf.constant(b), seed=tf.constant(7))),
        "log_likelihood": ({"log_likelihood": (b,)}, dict(x=x)),
    }
    lines, outs = [], {}
    missing = sorted(set(SIGNATURES) - set(sig.keys()))
    if missing:
        lines.append(f"MISSING signatures: {missing}")
    for name, (shapes, kwargs) in expected.items():
        if name not in sig:
            continue
        out = to_numpy(sig[name](**kwargs))
        outs[name] = out
        got = {key: (tuple(v.shape), str(v.dtype)) for key, v in out.items()}
        want = {key: (shape, "float32") for key, shape in shapes.items()}
        if got != want:
            lines.append(f"`{name}`: outputs {got}, expected {want}")
    if lines:
        lines.insert(0, "Signature output problems:")
    else:
        lines.append("All five signatures have the documented output names, "
                     "float32 dtypes and shapes.")

    if set(outs) != set(SIGNATURES) or len(lines) > 1:
        return lines  # the comparisons below need every documented output

    def diff(a, b_):
        return float(np.max(np.abs(np.asarray(a) - np.asarray(b_))))

    loc, scale = vae.encode(x)
    agree = {
        "serving_default vs vae.reconstruct":
            diff(outs["serving_default"]["reconstruction"],
                 vae.reconstruct(x)),
        "encode.loc vs vae.encode": diff(outs["encode"]["loc"], loc),
        "encode.scale vs vae.encode": diff(outs["encode"]["scale"], scale),
        "decode.params vs vae.decode": diff(outs["decode"]["params"],
                                            vae.decode(z)),
        "sample vs vae.sample(seed=7)": diff(outs["sample"]["samples"],
                                             vae.sample(b, seed=7)),
    }
    lines.append("Max |SavedModel - in-memory|: " + ", ".join(
        f"{key} {value:.1e}" for key, value in agree.items()))
    ll_a = outs["log_likelihood"]["log_likelihood"]
    ll_b = to_numpy(sig["log_likelihood"](x=x))["log_likelihood"]
    ll_mem = vae.log_likelihood(x, num_samples=k, batch_size=b)
    lines.append(
        f"log_likelihood (K={k}) on 4 rows: two signature calls differ by up "
        f"to {diff(ll_a, ll_b):.3f} nats (fresh noise per call: "
        f"{'yes' if diff(ll_a, ll_b) > 0 else 'no'}); mean "
        f"{np.mean(ll_a):.2f} vs in-memory {np.mean(ll_mem):.2f} nats")
    return lines


# ----------------------------------------------------------------- report
def table(rows, budget, repeats):
    lines = [
        "| call | kind | batch | timed calls | first call ms | p50 ms | p90 ms "
        "| p99 ms | rows/s at p50 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, kind, batch, first, times in rows:
        ms = np.asarray(times) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        lines.append(
            f"| {label} | {kind} | {batch} | {len(ms)} | {first * 1e3:.1f} | "
            f"{p50:.2f} | {p90:.2f} | {p99:.2f} | {batch / p50 * 1e3:,.0f} |")
    lines += ["", f"Timed calls per cell: up to {repeats}, stopped after "
              f"{budget:g} s (at least {MIN_REPEATS}); outputs converted to "
              "NumPy inside each timed call."]
    return lines


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int,
                   help="training epochs before export (default 1; 0 = none)")
    p.add_argument("--examples", type=int,
                   help="synthetic training examples (default 4096)")
    p.add_argument("--batch-sizes", type=int, nargs="+",
                   help="request batch sizes (default 1 256)")
    p.add_argument("--ll-samples", type=int,
                   help="K of the exported log_likelihood (default 100)")
    p.add_argument("--warmup", type=int, help="untimed calls (default 3)")
    p.add_argument("--repeats", type=int,
                   help="max timed calls per cell (default 200)")
    p.add_argument("--budget", type=float,
                   help="seconds of timed calls per cell (default 2)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for a smoke test")
    p.add_argument("--output", help="also write the markdown report here")
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def main(argv=None):
    args = parse_args(argv)
    run_start = time.perf_counter()
    keras.utils.set_random_seed(MODEL_SEED)
    # Keras traces one predict function per model (vae, its encoder and its
    # decoder) and per new batch size; TF counts them together and warns of
    # "retracing", which is expected here.
    tf.get_logger().setLevel("ERROR")
    header = ["# keras_vae serving latency", ""] + [
        f"- {line}" for line in machine_lines()]
    print("\n".join(header), flush=True)

    vae = build_vae()
    train_s = train(vae, synthetic_binary_data(args.examples), args.epochs)
    tmp = tempfile.mkdtemp(prefix="serving_latency-")
    try:
        path = os.path.join(tmp, "saved_model")
        start = time.perf_counter()
        vae.export_serving(path, log_likelihood_samples=args.ll_samples)
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        loaded = tf.saved_model.load(path)
        load_s = time.perf_counter() - start
        sig = loaded.signatures
        setup = (f"Model: MLP VAE {INPUT_DIM}-{'-'.join(map(str, HIDDEN_UNITS))}"
                 f"-{LATENT_DIM} (mirrored decoder, Bernoulli), trained "
                 f"{args.epochs} epoch(s) on {args.examples} synthetic binary "
                 f"examples in {train_s:.1f} s; export_serving (K = "
                 f"{args.ll_samples}) {export_s:.1f} s; tf.saved_model.load "
                 f"{load_s:.1f} s.")
        print(setup, flush=True)

        rng = np.random.default_rng(REQUEST_SEED)
        biggest = max(max(args.batch_sizes), 4)
        requests = {
            "x": synthetic_binary_data(biggest, seed=REQUEST_SEED),
            "z": rng.normal(size=(biggest, LATENT_DIM)).astype(np.float32),
        }
        checks = signature_checks(sig, vae, requests, args.ll_samples)
        for line in checks:
            print(line, flush=True)

        rows = []
        for batch in args.batch_sizes:
            calls = make_calls(sig, vae, batch, requests, args.ll_samples)
            first, times = time_calls(calls, args.warmup, args.repeats,
                                      args.budget)
            for label, kind, _ in calls:
                rows.append((label, kind, batch, first[label], times[label]))
                p50 = np.percentile(times[label], 50) * 1e3
                print(f"  batch {batch:>4}  {label:<28} p50 {p50:9.2f} ms",
                      flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    body = ["", setup, "", *table(rows, args.budget, args.repeats), "",
            *[f"- {line}" for line in checks],
            f"- {load_line('at the end')}",
            f"- total run time: {time.perf_counter() - run_start:.0f} s"]
    print("\n".join(body))
    if args.output:
        with open(args.output, "w") as f:
            f.write("\n".join(header + body) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
