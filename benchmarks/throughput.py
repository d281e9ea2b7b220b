"""Training throughput of `keras_vae.VAEModel` vs the keras.io VAE.

Everything is measured in one process on the same machine, with the same
MLP VAE, the same synthetic binary data and the same `tf.data` pipeline:

```none
encoder  784 -> 512 -> 256 -> (loc, scale) of a 32-d Gaussian   (ReLU)
decoder   32 -> 256 -> 512 -> 784 Bernoulli logits               (ReLU)
Adam(1e-3); data: 8192 binary vectors (harness.synthetic_binary, seed 0)
pipeline: from_tensor_slices -> cache -> batch(drop_remainder) -> prefetch
```

Contestants: `VAEModel` with XLA (its default) and without, and the keras.io
VAE as published (`baselines.PlainVAE`: three `Mean` trackers, keras.random
noise) without and with `jit_compile=True`. The leanest hand-written step
(no trackers, tf.random.normal, XLA) is `step_parity.py`'s baseline; the
speed of inference over large arrays is `inference_speed.py`'s.

Each (model, batch size) gets a fresh model, one warm-up epoch (tracing,
compilation) and `--epochs` timed epochs, the variants taking turns epoch by
epoch; examples/s from the median epoch (wall time from `on_epoch_begin` to
`on_epoch_end`). Train-step FLOPs are counted from the Dense layers only and
compared with the machine's float32 matmul rate (the better of an XLA and a
plain TensorFlow N x N `tf.matmul`: on CPU they use different GEMM code):

```none
forward = sum over Dense layers of 2 * B * in * out
train   = 3 * forward     (backward ~ 2 * forward; over-counts slightly:
                           the first layer needs no dL/dx)
```

    python benchmarks/throughput.py                 # ~1-2 min on 2 cores
    python benchmarks/throughput.py --quick         # smoke test, seconds
    python benchmarks/throughput.py --epochs 5 --batch-sizes 64 256 --output out.md
"""

import statistics
import sys

import harness  # first: it sets TF's log level before TF is imported
import keras
import tensorflow as tf

import baselines

DIM, HIDDEN, LATENT = 784, (512, 256), 32
MODEL_SEED = 1
BACKWARD_OVER_FORWARD = 2
DEFAULTS = {"epochs": 3, "examples": 8192, "batch_sizes": (128, 1024),
            "matmul_size": 2048, "matmul_repeats": 10}
QUICK = {"epochs": 1, "examples": 512, "batch_sizes": (128,),
         "matmul_size": 256, "matmul_repeats": 2}

# Variants (model, jit_compile) in the order they take turns.
VAE_XLA, VAE_NO_XLA = ("VAEModel", True), ("VAEModel", False)
PLAIN_XLA, PLAIN_NO_XLA = ("plain Keras", True), ("plain Keras", False)
VARIANTS = (VAE_XLA, VAE_NO_XLA, PLAIN_NO_XLA, PLAIN_XLA)
RATIO_BATCH, FRACTION_BATCH = 128, 1024   # else the smallest / largest run


def label(variant):
    return f"{variant[0]} ({'XLA' if variant[1] else 'no XLA'})"


def dense_shapes():
    """(in, out) of every Dense matmul in the train step."""
    enc, dec = (DIM,) + HIDDEN, (LATENT,) + HIDDEN[::-1] + (DIM,)
    return (list(zip(enc[:-1], enc[1:])) + [(HIDDEN[-1], LATENT)] * 2
            + list(zip(dec[:-1], dec[1:])))


def train_step_flops(batch_size):
    forward = sum(2 * batch_size * i * o for i, o in dense_shapes())
    return (1 + BACKWARD_OVER_FORWARD) * forward


def build(variant):
    keras.utils.set_random_seed(MODEL_SEED)
    name, jit = variant
    if name == "VAEModel":
        return baselines.compile_vae(
            baselines.mlp_vae(DIM, HIDDEN, LATENT, MODEL_SEED),
            jit_compile=jit)
    return baselines.hand_written(DIM, HIDDEN, LATENT, MODEL_SEED,
                                  jit_compile=jit)


def count_traces(model):
    """Wraps `model.train_step` so each (re)trace bumps a counter (the
    wrapper runs only while TensorFlow traces: it costs nothing per step)."""
    counter = {"traces": 0}
    step = model.train_step

    def counted(data):
        counter["traces"] += 1
        return step(data)

    model.train_step = counted
    return counter


def time_training(x, batch_size, epochs):
    """All VARIANTS at one batch size, taking turns epoch by epoch."""
    ds = harness.dataset(x, batch_size, cache=True, drop_remainder=True)
    runs = {}
    for variant in VARIANTS:
        model = build(variant)
        runs[variant] = (model, count_traces(model), harness.EpochTimer(), [])

    def epoch(model, timer, losses):
        history = model.fit(ds, epochs=1, callbacks=[timer], shuffle=False,
                            verbose=0)  # the pipeline decides the order
        losses.append(float(history.history["loss"][-1]))

    harness.take_turns(
        {v: (lambda r=r: epoch(r[0], r[2], r[3])) for v, r in runs.items()},
        rounds=epochs)
    examples = len(x) // batch_size * batch_size
    rows = []
    for variant, (model, traces, timer, losses) in runs.items():
        epoch_s = statistics.median(timer.times[1:])
        rows.append({
            "variant": variant, "batch": batch_size, "warmup": timer.times[0],
            "epoch_s": epoch_s,
            "cpu_s": statistics.median(timer.cpu_times[1:]),
            "rate": examples / epoch_s,
            "gflops": examples // batch_size * train_step_flops(batch_size)
            / epoch_s / 1e9,
            "traces": traces["traces"], "loss": losses[-1]})
        print(f"  {label(variant)}, batch {batch_size}: "
              f"{rows[-1]['rate']:,.0f} examples/s", flush=True)
    return rows


def matmul_gflops(size, repeats, jit_compile):
    """GFLOP/s of a float32 size x size matmul, the fastest of `repeats`
    (the ceiling: what the machine does when nothing else competes)."""
    a = tf.random.stateless_normal((size, size), seed=(0, 1))
    b = tf.random.stateless_normal((size, size), seed=(0, 2))
    matmul = tf.function(tf.linalg.matmul, jit_compile=jit_compile)
    timing = harness.take_turns({"mm": lambda: matmul(a, b).numpy()}, repeats)
    return 2 * size**3 / min(timing["mm"].walls) / 1e9


def find(rows, variant, batch):
    return next((r for r in rows if r["variant"] == variant
                 and r["batch"] == batch), None)


def report_lines(args, rows, matmul):
    ceiling = max(matmul.values())
    lines = [
        f"Data: {args.examples} synthetic binary examples x {DIM}; 1 warm-up "
        f"+ {args.epochs} timed epochs per model, variants interleaved epoch "
        f"by epoch; median epoch. Matmul {args.matmul_size}^2 float32, best "
        f"of {args.matmul_repeats}: "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in matmul.items()) + ".",
        "",
        *harness.table(
            ["model", "batch", "warm-up epoch (s)", "median epoch (s)",
             "CPU s / epoch", "examples/s", "train GFLOP/s", "% of matmul",
             "traces", "final loss"],
            [[label(r["variant"]), r["batch"], f"{r['warmup']:.2f}",
              f"{r['epoch_s']:.3f}", f"{r['cpu_s']:.2f}", f"{r['rate']:,.0f}",
              f"{r['gflops']:.1f}", f"{100 * r['gflops'] / ceiling:.1f}%",
              r["traces"], f"{r['loss']:.2f}"] for r in rows]),
        "",
        "CPU s / epoch: process CPU time (all threads) of the median epoch. "
        "% of matmul: of the better of the XLA and TF matmul rates. traces: "
        "times the train step was traced; 2 is normal (TensorFlow traces a "
        "tf.function again when its first trace created variables, here "
        "Adam's slots), more would mean retracing. Train-step FLOPs = "
        f"{train_step_flops(1) / 1e6:.2f} MFLOP per example; Dense (in x "
        "out): " + ", ".join(f"{i}x{o}" for i, o in dense_shapes()) + ".",
        "",
        "Ratios:",
        "",
    ]
    batches = sorted({r["batch"] for r in rows})
    ratio_b = RATIO_BATCH if RATIO_BATCH in batches else batches[0]
    fraction_b = FRACTION_BATCH if FRACTION_BATCH in batches else batches[-1]
    ours = find(rows, VAE_XLA, ratio_b)
    for other in (PLAIN_XLA, PLAIN_NO_XLA):
        lines.append(f"- {label(VAE_XLA)} / {label(other)} at batch "
                     f"{ratio_b}: "
                     f"{ours['rate'] / find(rows, other, ratio_b)['rate']:.2f}x")
    big = find(rows, VAE_XLA, fraction_b)
    lines.append(f"- {label(VAE_XLA)} at batch {fraction_b}: "
                 f"{big['gflops']:.1f} GFLOP/s = " + ", ".join(
                     f"{100 * big['gflops'] / rate:.0f}% of the {kind} matmul"
                     for kind, rate in matmul.items()))
    return lines


def parse_args(argv):
    p = harness.parser(__doc__, "tiny sizes for a smoke test")
    p.add_argument("--epochs", type=int, help="timed epochs (default 3)")
    p.add_argument("--examples", type=int, help="training examples (8192)")
    p.add_argument("--batch-sizes", type=int, nargs="+",
                   help="batch sizes (128 1024)")
    p.add_argument("--matmul-size", type=int, help="N of the N x N matmul")
    p.add_argument("--matmul-repeats", type=int, help="matmul repeats (10)")
    args = harness.fill(p.parse_args(argv), DEFAULTS, QUICK)
    harness.positive(p, args, "epochs", "examples", "matmul_size",
                     "matmul_repeats")
    return args


def main(argv=None):
    args = parse_args(argv)
    report = harness.Report("keras_vae training throughput")
    matmul = {kind: matmul_gflops(args.matmul_size, args.matmul_repeats, jit)
              for kind, jit in (("XLA", True), ("TF", False))}
    x = harness.synthetic_binary(args.examples)
    rows, watches = [], []
    for batch in args.batch_sizes:
        watch = harness.CpuWatch()
        rows += time_training(x, batch, args.epochs)
        watches.append(watch.stop().line(f"training at batch {batch}"))
    report.add(*report_lines(args, rows, matmul), "",
               *[f"- {w}" for w in watches])
    report.emit(args.output)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
