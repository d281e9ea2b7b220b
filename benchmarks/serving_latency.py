"""Latency of the exported SavedModel's signatures, and of the in-memory model.

The MLP VAE of the user's story (784-512-256-32, mirrored decoder,
Bernoulli likelihood) is trained briefly on synthetic binary data
(`--epochs`, 0 = untrained: the latency does not depend on the weights),
exported with `vae.export_serving(path, log_likelihood_samples=K)` and
reloaded with `tf.saved_model.load`. Each signature is timed at each batch
size (default 1 and 256):

| call | request |
| --- | --- |
| `serving_default` | `x` (B, 784) -> `reconstruction` |
| `encode` | `x` -> `loc`, `scale` |
| `decode` | `z` (B, 32) -> `params`, `mean` |
| `sample` | `num_samples` = B, `seed` -> `samples` |
| `log_likelihood` | `x` -> `log_likelihood` (K importance samples per row) |

and, for reference, the in-memory model's methods on the same inputs
(`predict`, an eager `vae(x)`, `reconstruct`, `encode`, `decode`, `sample`,
`log_likelihood`, with `batch_size=B`).

Method (`harness.take_turns`): the first call of each is timed alone
(tracing, XLA compilation, lazy loading), then `--warmup` untimed calls,
then up to `--repeats` timed calls in `ROUNDS` rounds (the calls take turns,
so load from other processes falls on all alike), each call stopping after
`--budget` seconds (at least `MIN_REPEATS` calls). Every timed call turns
its outputs into NumPy arrays (what a server returns). It also checks each
signature's output names, dtypes and shapes, compares them with the
in-memory methods, and whether two `log_likelihood` calls differ (fresh
noise per call).

    python benchmarks/serving_latency.py              # ~2-3 min on 2 cores
    python benchmarks/serving_latency.py --quick      # smoke test
    python benchmarks/serving_latency.py --batch-sizes 1 32 256 --output lat.md
"""

import os
import shutil
import sys
import tempfile

import harness  # first: it sets TF's log level before TF is imported
import keras
import numpy as np
import tensorflow as tf

import baselines

DIM, HIDDEN, LATENT = 784, (512, 256), 32
TRAIN_BATCH, MODEL_SEED, REQUEST_SEED = 128, 1, 2
ROUNDS, MIN_REPEATS = 5, 5
DEFAULTS = {"epochs": 1, "examples": 4096, "batch_sizes": (1, 256),
            "ll_samples": 100, "warmup": 3, "repeats": 200, "budget": 2.0}
QUICK = {"epochs": 1, "examples": 256, "batch_sizes": (16,),
         "ll_samples": 10, "warmup": 0, "repeats": 2, "budget": 0.1}
SHAPES = {  # signature: (outputs and their shapes for b rows, request)
    "serving_default": ({"reconstruction": DIM}, "x"),
    "encode": ({"loc": LATENT, "scale": LATENT}, "x"),
    "decode": ({"params": DIM, "mean": DIM}, "z"),
    "sample": ({"samples": DIM}, "n"),
    "log_likelihood": ({"log_likelihood": None}, "x"),
}


def to_numpy(out):
    return tf.nest.map_structure(np.asarray, out)


def request(sig, name, x, z, n):
    kind = SHAPES[name][1]
    if kind == "n":
        return to_numpy(sig[name](num_samples=tf.constant(n, tf.int32),
                                  seed=tf.constant(7, tf.int32)))
    return to_numpy(sig[name](**{kind: tf.constant(x if kind == "x" else z)}))


def make_calls(sig, vae, batch, requests, k):
    """{(label, kind): fn} for one batch size; each returns NumPy output."""
    x, z = requests["x"][:batch], requests["z"][:batch]
    calls = {(name, "SavedModel"): (lambda name=name: request(
        sig, name, x, z, batch)) for name in SHAPES}
    mem = {
        "vae.predict(x)": lambda: vae.predict(x, batch_size=batch, verbose=0),
        "vae(x) eager call": lambda: to_numpy(vae(tf.constant(x))),
        "vae.reconstruct(x)": lambda: vae.reconstruct(x, batch_size=batch),
        "vae.encode(x)": lambda: vae.encode(x, batch_size=batch),
        "vae.decode(z)": lambda: vae.decode(z, batch_size=batch),
        "vae.sample(n)": lambda: vae.sample(batch, seed=7),
        f"vae.log_likelihood(x, K={k})": lambda: vae.log_likelihood(
            x, num_samples=k, batch_size=batch),
    }
    return {**calls, **{(label, "in-memory"): fn for label, fn in mem.items()}}


def signature_checks(sig, vae, requests, k):
    """Output names/dtypes/shapes and agreement with the in-memory model."""
    b = 4
    x, z = requests["x"][:b], requests["z"][:b]
    missing = sorted(set(SHAPES) - set(sig.keys()))
    if missing:
        return [f"MISSING signatures: {missing}"]
    outs, problems = {}, []
    for name, (shapes, _) in SHAPES.items():
        outs[name] = request(sig, name, x, z, b)
        got = {key: (v.shape, str(v.dtype)) for key, v in outs[name].items()}
        want = {key: ((b, w) if w else (b,), "float32")
                for key, w in shapes.items()}
        if got != want:
            problems.append(f"`{name}`: outputs {got}, expected {want}")
    if problems:
        return ["Signature output problems:", *problems]

    def diff(a, c):
        return float(np.max(np.abs(np.asarray(a) - np.asarray(c))))

    loc, scale = vae.encode(x)
    agree = {
        "serving_default vs vae.reconstruct": diff(
            outs["serving_default"]["reconstruction"], vae.reconstruct(x)),
        "encode.loc vs vae.encode": diff(outs["encode"]["loc"], loc),
        "encode.scale vs vae.encode": diff(outs["encode"]["scale"], scale),
        "decode.params vs vae.decode": diff(outs["decode"]["params"],
                                            vae.decode(z)),
        "sample vs vae.sample(seed=7)": diff(outs["sample"]["samples"],
                                             vae.sample(b, seed=7)),
    }
    ll_a = outs["log_likelihood"]["log_likelihood"]
    ll_b = request(sig, "log_likelihood", x, z, b)["log_likelihood"]
    ll_mem = vae.log_likelihood(x, num_samples=k, batch_size=b)
    return [
        "All five signatures have the documented output names, float32 "
        "dtypes and shapes.",
        "Max |SavedModel - in-memory|: " + ", ".join(
            f"{key} {value:.1e}" for key, value in agree.items()),
        f"log_likelihood (K={k}) on 4 rows: two signature calls differ by up "
        f"to {diff(ll_a, ll_b):.3f} nats (fresh noise per call: "
        f"{'yes' if diff(ll_a, ll_b) > 0 else 'no'}); mean "
        f"{np.mean(ll_a):.2f} vs in-memory {np.mean(ll_mem):.2f} nats",
    ]


def latency_rows(calls, timings, batch):
    rows = []
    for (label, kind), t in zip(calls, timings.values()):
        ms = np.asarray(t.walls) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        rows.append([label, kind, batch, len(ms), f"{t.first * 1e3:.1f}",
                     f"{p50:.2f}", f"{p90:.2f}", f"{p99:.2f}",
                     f"{batch / p50 * 1e3:,.0f}"])
        print(f"  batch {batch:>4}  {label:<28} p50 {p50:9.2f} ms",
              flush=True)
    return rows


def parse_args(argv):
    p = harness.parser(__doc__, "tiny sizes for a smoke test")
    p.add_argument("--epochs", type=int,
                   help="training epochs before export (default 1; 0 = none)")
    p.add_argument("--examples", type=int, help="training examples (4096)")
    p.add_argument("--batch-sizes", type=int, nargs="+",
                   help="request batch sizes (default 1 256)")
    p.add_argument("--ll-samples", type=int,
                   help="K of the exported log_likelihood (default 100)")
    p.add_argument("--warmup", type=int, help="untimed calls (default 3)")
    p.add_argument("--repeats", type=int,
                   help="max timed calls per cell (default 200)")
    p.add_argument("--budget", type=float,
                   help="seconds of timed calls per cell (default 2)")
    return harness.fill(p.parse_args(argv), DEFAULTS, QUICK)


def main(argv=None):
    args = parse_args(argv)
    report = harness.Report("keras_vae serving latency")
    # Keras traces one predict function per model and batch size; TF warns
    # of "retracing", which is expected here.
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(MODEL_SEED)
    vae = baselines.compile_vae(baselines.mlp_vae(
        DIM, HIDDEN, LATENT, MODEL_SEED, name="mlp_vae", input_name="x"))
    x_train = harness.synthetic_binary(args.examples)
    _, train_s = harness.timed(lambda: args.epochs and vae.fit(
        harness.dataset(x_train, TRAIN_BATCH, shuffle_seed=0),
        epochs=args.epochs, verbose=0, shuffle=False))
    tmp = tempfile.mkdtemp(prefix="serving_latency-")
    try:
        path = os.path.join(tmp, "saved_model")
        _, export_s = harness.timed(lambda: vae.export_serving(
            path, log_likelihood_samples=args.ll_samples))
        loaded, load_s = harness.timed(lambda: tf.saved_model.load(path))
        sig = loaded.signatures
        biggest = max(max(args.batch_sizes), 4)
        requests = {
            "x": harness.synthetic_binary(biggest, seed=REQUEST_SEED),
            "z": np.random.default_rng(REQUEST_SEED).normal(
                size=(biggest, LATENT)).astype(np.float32)}
        checks = signature_checks(sig, vae, requests, args.ll_samples)
        rows = []
        for batch in args.batch_sizes:
            calls = make_calls(sig, vae, batch, requests, args.ll_samples)
            timings = harness.take_turns(
                calls, ROUNDS, per_round=max(1, -(-args.repeats // ROUNDS)),
                warmup=args.warmup, budget=args.budget,
                min_calls=MIN_REPEATS, max_calls=args.repeats)
            rows += latency_rows(calls, timings, batch)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    threads = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    report.add(
        f"Model: MLP VAE {DIM}-{'-'.join(map(str, HIDDEN))}-{LATENT} "
        f"(mirrored decoder, Bernoulli), trained {args.epochs} epoch(s) on "
        f"{args.examples} synthetic binary examples in {train_s:.1f} s; "
        f"export_serving (K = {args.ll_samples}) {export_s:.1f} s; "
        f"tf.saved_model.load {load_s:.1f} s; TF intra/inter-op threads "
        f"{threads[0]}/{threads[1]} (0 = TF's default).", "",
        *harness.table(["call", "kind", "batch", "timed calls",
                        "first call ms", "p50 ms", "p90 ms", "p99 ms",
                        "rows/s at p50"], rows, "llrrrrrrr"),
        "", f"Timed calls per cell: up to {args.repeats}, stopped after "
        f"{args.budget:g} s (at least {MIN_REPEATS}); outputs converted to "
        "NumPy inside each timed call.", "",
        *[f"- {line}" for line in checks])
    report.emit(args.output)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
