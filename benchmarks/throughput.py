"""Training and evaluation throughput of `keras_vae.VAEModel` vs plain Keras.

Everything is measured in one process on the same machine, with the same
MLP VAE, the same synthetic binary data and the same `tf.data` pipeline:

```none
encoder  784 -> 512 -> 256 -> (loc, scale) of a 32-d Gaussian   (ReLU)
decoder   32 -> 256 -> 512 -> 784 Bernoulli logits               (ReLU)
Adam(1e-3); data: 8192 binary vectors from a fixed-seed generator
pipeline: from_tensor_slices -> cache -> batch(drop_remainder) -> prefetch
```

Contestants:

1. `keras_vae.VAEModel` with XLA (its default `jit_compile=True`) and
   without (`jit_compile=False`);
2. a plain Keras VAE in the keras.io pattern (a `Sampling` layer and a
   `keras.Model` subclass whose `train_step` has a hand-written Bernoulli
   cross-entropy and analytic KL), without and with `jit_compile=True`;
3. the machine's dense float32 matmul throughput (an N x N `tf.matmul`,
   with XLA and with TensorFlow's own kernel; on CPU they use different
   GEMM code), the better of which is the ceiling the steps are compared
   with.

Each (model, batch size) pair gets a fresh model, one warm-up epoch (tracing
and compilation) and `--epochs` timed epochs; examples/s is computed from the
median timed epoch. Train-step FLOPs are counted from the Dense layers only:

```none
forward  = sum over Dense layers of 2 * B * in * out
train    = 3 * forward        (backward ~ 2 * forward: dL/dW and dL/dx)
```

(This slightly over-counts: the first layer needs no dL/dx.)

Finally `VAEModel.log_likelihood(x, num_samples=K)` is timed against a
hand-written XLA function over the same trained encoder/decoder (K samples in
an on-device loop, logsumexp), and both estimates are printed as a check.

Usage:

```none
python benchmarks/throughput.py                 # default, ~1-2 min on 2 cores
python benchmarks/throughput.py --quick         # smoke test, seconds
python benchmarks/throughput.py --epochs 5 --batch-sizes 64 256 --output out.md
```
"""

import argparse
import dataclasses
import datetime
import math
import os
import platform
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402
from common import PlainVAE, Sampling, cpu_model, mlp  # noqa: E402

# ------------------------------------------------------------ configuration
INPUT_DIM = 784
HIDDEN_UNITS = (512, 256)          # encoder; the decoder mirrors it
LATENT_DIM = 32
LEARNING_RATE = 1e-3

DATA_SEED = 0                      # synthetic data
MODEL_SEED = 1                     # weight init and sampling noise
DATA_FACTORS = 16                  # latent factors behind the synthetic data
DATA_WEIGHT_SCALE = 0.5            # std of the synthetic data's projection

BACKWARD_OVER_FORWARD = 2          # backward FLOPs ~ 2 x forward FLOPs

LL_BATCH_SIZE = 100                # examples per chunk (VAEModel's default)
LL_SAMPLES_PER_CHUNK = 100         # hand-written loop: samples per iteration
LL_SEED = 7
LL_REPEATS = 3                     # timed log p(x) calls per method (median)

BUSY_LOAD_PER_CORE = 0.25          # 1-min load per core above which we warn
BUSY_SHARE = 0.05                  # others' share of the CPU above which we warn

DEFAULTS = {
    "epochs": 3,
    "examples": 8192,
    "batch_sizes": (128, 1024),
    "ll_examples": 500,
    "ll_samples": 1000,
    "matmul_size": 2048,
    "matmul_repeats": 10,
}
QUICK = {
    "epochs": 1,
    "examples": 1024,
    "batch_sizes": (128,),
    "ll_examples": 100,
    "ll_samples": 50,
    "matmul_size": 512,
    "matmul_repeats": 3,
}

# Variants, named (model, jit_compile), in the order they take turns.
VAE_XLA = ("VAEModel", True)
VAE_NO_XLA = ("VAEModel", False)
PLAIN_XLA = ("plain Keras", True)
PLAIN_NO_XLA = ("plain Keras", False)
VARIANTS = (VAE_XLA, VAE_NO_XLA, PLAIN_NO_XLA, PLAIN_XLA)
# The ratios compare VAEModel (XLA) with the plain model at RATIO_BATCH and
# with the matmul rate at FRACTION_BATCH (else the smallest / largest batch
# size of the run).
RATIO_BATCH = 128
FRACTION_BATCH = 1024


# ------------------------------------------------------------------ machine
def machine_info():
    return [
        f"date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"cpu: {cpu_model()}, {os.cpu_count()} logical cores",
        f"python {platform.python_version()}, tensorflow {tf.__version__}, "
        f"keras {keras.__version__}, keras_vae {keras_vae.__version__}",
        f"platform: {platform.platform()}",
    ]


def _machine_busy_seconds():
    """CPU seconds all processes have spent busy since boot (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuWatch:
    """How much of the machine other processes used while we measured.

    Our timings are only meaningful if we had the cores to ourselves; this
    reports (machine busy CPU - our CPU) / (wall time x cores).
    """

    def __init__(self):
        self._start = self._now()
        self._end = None

    @staticmethod
    def _now():
        return time.perf_counter(), _machine_busy_seconds(), _own_cpu_seconds()

    def stop(self):
        self._end = self._now()
        return self

    def others_share(self):
        wall0, busy0, own0 = self._start
        wall1, busy1, own1 = self._end or self._now()
        if busy0 is None or busy1 is None:
            return None
        others = (busy1 - busy0) - (own1 - own0)
        return max(0.0, others) / ((wall1 - wall0) * (os.cpu_count() or 1))


def others_line(what, watch):
    share = watch.others_share()
    if share is None:
        return f"other processes' CPU during {what}: unknown"
    line = (f"other processes used {100 * share:.0f}% of the machine's CPU "
            f"during {what}")
    if share > BUSY_SHARE:
        line += " -- timings are noisy"
    return line


def peak_rss_mib():
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


# --------------------------------------------------------------------- data
def synthetic_binary_data(num_examples, seed=DATA_SEED):
    """Binary vectors with low-rank structure (so the VAE has work to do).

    x_d ~ Bernoulli(sigmoid(f @ W + b)_d),  f ~ N(0, I_DATA_FACTORS).
    """
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((num_examples, DATA_FACTORS))
    weights = DATA_WEIGHT_SCALE * rng.standard_normal((DATA_FACTORS, INPUT_DIM))
    bias = rng.standard_normal(INPUT_DIM)
    probs = 1.0 / (1.0 + np.exp(-(factors @ weights + bias)))
    return (rng.random(probs.shape) < probs).astype("float32")


def make_dataset(x, batch_size):
    """The one pipeline every contestant trains on (x only: target = x)."""
    return (
        tf.data.Dataset.from_tensor_slices(x)
        .cache()
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


# ------------------------------------------------------------------- models
def dense_shapes():
    """(in, out) of every Dense matmul in the train step."""
    enc = (INPUT_DIM,) + HIDDEN_UNITS
    dec = (LATENT_DIM,) + HIDDEN_UNITS[::-1] + (INPUT_DIM,)
    shapes = list(zip(enc[:-1], enc[1:]))
    shapes += [(HIDDEN_UNITS[-1], LATENT_DIM)] * 2      # loc and scale heads
    shapes += list(zip(dec[:-1], dec[1:]))
    return shapes


def forward_flops(batch_size, shapes):
    return sum(2 * batch_size * i * o for i, o in shapes)


def train_step_flops(batch_size):
    return (1 + BACKWARD_OVER_FORWARD) * forward_flops(batch_size, dense_shapes())


def log_likelihood_flops(num_examples, num_samples):
    """Forward only: the encoder once per example, the decoder K times."""
    shapes = dense_shapes()
    n_enc = len(HIDDEN_UNITS) + 2
    return forward_flops(num_examples, shapes[:n_enc]) + forward_flops(
        num_examples * num_samples, shapes[n_enc:]
    )


def build_vae_model(jit_compile):
    """The user's story from DESIGN.md."""
    x_in = keras.Input((INPUT_DIM,))
    h = mlp(x_in, HIDDEN_UNITS)
    q = keras_vae.GaussianEncoderHead(latent_dim=LATENT_DIM)(h)
    q = keras_vae.KLRegularizer()(q)
    z = keras_vae.ReparameterizedSample(seed=MODEL_SEED)(q)
    logits = keras.layers.Dense(INPUT_DIM)(mlp(z, HIDDEN_UNITS[::-1]))
    model = keras_vae.VAEModel(x_in, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras_vae.losses.BernoulliNLL(),
        jit_compile=jit_compile,
    )
    return model


def build_plain_model(jit_compile):
    x_in = keras.Input((INPUT_DIM,))
    h = mlp(x_in, HIDDEN_UNITS)
    z_mean = keras.layers.Dense(LATENT_DIM, name="z_mean")(h)
    z_log_var = keras.layers.Dense(LATENT_DIM, name="z_log_var")(h)
    z = Sampling(seed=MODEL_SEED)([z_mean, z_log_var])
    encoder = keras.Model(x_in, [z_mean, z_log_var, z], name="encoder")
    z_in = keras.Input((LATENT_DIM,))
    logits = keras.layers.Dense(INPUT_DIM)(mlp(z_in, HIDDEN_UNITS[::-1]))
    decoder = keras.Model(z_in, logits, name="decoder")
    model = PlainVAE(encoder, decoder)
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE), jit_compile=jit_compile
    )
    return model


BUILDERS = {"VAEModel": build_vae_model, "plain Keras": build_plain_model}


# ----------------------------------------------------------------- training
class EpochTimer(keras.callbacks.Callback):
    """Wall time and process CPU time of every epoch.

    CPU time (all threads) measures the work done; it is much less
    disturbed than wall time when other processes compete for the cores.
    """

    def __init__(self):
        super().__init__()
        self.times, self.cpu_times = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = (time.perf_counter(), _own_cpu_seconds())

    def on_epoch_end(self, epoch, logs=None):
        wall, cpu = self._start
        self.times.append(time.perf_counter() - wall)
        self.cpu_times.append(_own_cpu_seconds() - cpu)


def count_traces(model):
    """Wraps `model.train_step` so each (re)trace bumps a counter.

    The wrapper runs only while TensorFlow traces the step (Python code in
    a tf.function is not executed per step), so it costs nothing per step.
    """
    counter = {"traces": 0}
    step = model.train_step

    def counted_train_step(data):
        counter["traces"] += 1
        return step(data)

    model.train_step = counted_train_step
    return counter


@dataclasses.dataclass
class TrainResult:
    model: str
    jit_compile: bool
    batch_size: int
    warmup_s: float
    epoch_s: float
    cpu_epoch_s: float
    examples_per_s: float
    gflops: float
    traces: int
    final_loss: float


@dataclasses.dataclass
class _Run:
    name: str
    jit_compile: bool
    model: keras.Model
    traces: dict
    timer: EpochTimer
    loss: float = float("nan")


def time_training(x, batch_size, epochs):
    """All VARIANTS at one batch size; returns (results, trained models).

    Every variant gets a fresh model (same seed), one warm-up epoch, then
    `epochs` timed `fit(epochs=1)` calls. The variants take turns epoch by
    epoch, so a change in machine load (other processes) is spread over
    all of them instead of penalising whichever runs last.
    """
    dataset = make_dataset(x, batch_size)
    runs = []
    for name, jit in VARIANTS:
        keras.utils.set_random_seed(MODEL_SEED)
        model = BUILDERS[name](jit)
        runs.append(_Run(name, jit, model, count_traces(model), EpochTimer()))
    for _ in range(1 + epochs):
        for run in runs:
            history = run.model.fit(
                dataset, epochs=1, callbacks=[run.timer],
                shuffle=False, verbose=0,  # the pipeline decides the order
            )
            run.loss = float(history.history["loss"][-1])
    steps = len(x) // batch_size
    results = []
    for run in runs:
        epoch_s = statistics.median(run.timer.times[1:])
        results.append(TrainResult(
            model=run.name,
            jit_compile=run.jit_compile,
            batch_size=batch_size,
            warmup_s=run.timer.times[0],
            epoch_s=epoch_s,
            cpu_epoch_s=statistics.median(run.timer.cpu_times[1:]),
            examples_per_s=steps * batch_size / epoch_s,
            gflops=steps * train_step_flops(batch_size) / epoch_s / 1e9,
            traces=run.traces["traces"],
            final_loss=run.loss,
        ))
    return results, {(r.name, r.jit_compile): r.model for r in runs}


# ------------------------------------------------------------------- matmul
def matmul_gflops(size, repeats, jit_compile):
    """GFLOP/s of a float32 size x size `tf.matmul`, fastest of `repeats`.

    The fastest repeat, not the median: this is the ceiling the training
    steps are compared with, i.e. what the machine can do when nothing else
    competes for the cores.
    """
    a = tf.random.stateless_normal((size, size), seed=(DATA_SEED, 1))
    b = tf.random.stateless_normal((size, size), seed=(DATA_SEED, 2))
    matmul = tf.function(tf.linalg.matmul, jit_compile=jit_compile)
    matmul(a, b).numpy()  # trace / compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()  # the whole product: XLA cannot slice it away
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


def matmul_ceiling(size, repeats):
    """{"XLA": GFLOP/s, "TF": GFLOP/s}. On CPU the two use different GEMM
    kernels (XLA's own vs oneDNN/Eigen), so the ceiling is the larger."""
    return {
        "XLA": matmul_gflops(size, repeats, jit_compile=True),
        "TF": matmul_gflops(size, repeats, jit_compile=False),
    }


# ------------------------------------------------------- log-likelihood
def handwritten_log_likelihood_fn(vae, num_samples):
    """An XLA function: x (B, D) -> importance-sampled log p(x), shape (B,).

    Uses the trained `vae.encoder` / `vae.decoder` (the same weights), draws
    the K samples in chunks inside an XLA while-loop and combines them with
    a running logsumexp:

    ```none
    log w = sum_d [x l - softplus(l)] + log N(z; 0, I) - log N(z; loc, scale^2)
    log p(x) ~ logsumexp_k log w_k - log K
    ```
    """
    chunk = math.gcd(num_samples, LL_SAMPLES_PER_CHUNK)
    num_chunks = num_samples // chunk
    half_log_2pi = 0.5 * math.log(2.0 * math.pi)

    @tf.function(jit_compile=True)
    def log_px(x, seed):
        loc, scale = vae.encoder(x, training=False)
        batch = tf.shape(x)[0]
        sum_log_scale = tf.reduce_sum(tf.math.log(scale), -1)

        def body(i, acc):
            eps = tf.random.stateless_normal(
                (chunk, batch, LATENT_DIM), seed=tf.stack([seed, i])
            )
            z = loc + scale * eps                                  # (C, B, L)
            logits = vae.decoder(
                tf.reshape(z, (-1, LATENT_DIM)), training=False
            )
            logits = tf.reshape(logits, (chunk, batch, INPUT_DIM))
            log_px_z = tf.reduce_sum(x * logits - tf.nn.softplus(logits), -1)
            log_pz = tf.reduce_sum(-0.5 * tf.square(z) - half_log_2pi, -1)
            log_qz = tf.reduce_sum(
                -0.5 * tf.square(eps) - half_log_2pi, -1
            ) - sum_log_scale
            lse = tf.reduce_logsumexp(log_px_z + log_pz - log_qz, 0)
            return i + 1, tf.experimental.numpy.logaddexp(acc, lse)

        init = tf.fill([batch], tf.constant(-np.inf, tf.float32))
        _, acc = tf.while_loop(
            lambda i, _: i < num_chunks, body, (tf.constant(0), init)
        )
        return acc - math.log(num_samples)

    return log_px


def handwritten_log_likelihood(fn, x, batch_size=LL_BATCH_SIZE):
    out = [
        fn(tf.constant(x[s:s + batch_size]), tf.constant(LL_SEED + s)).numpy()
        for s in range(0, len(x), batch_size)
    ]
    return np.concatenate(out)


@dataclasses.dataclass
class LLResult:
    name: str
    first_call_s: float    # on LL_BATCH_SIZE examples: tracing + compilation
    seconds: float         # median over LL_REPEATS timed calls
    mean_log_px: float     # over the finite estimates
    non_finite: int        # estimates that are nan or inf
    gflops: float


def time_log_likelihoods(vae, x, num_samples):
    """VAEModel.log_likelihood vs the hand-written XLA loop, same weights.

    Each method is first called on `LL_BATCH_SIZE` examples (this traces
    and compiles every shape the full call needs), then the two take turns
    for `LL_REPEATS` timed calls on all of `x`.
    """
    hand_fn = handwritten_log_likelihood_fn(vae, num_samples)
    methods = {
        "VAEModel.log_likelihood": lambda data: vae.log_likelihood(
            data, num_samples=num_samples, batch_size=LL_BATCH_SIZE
        ),
        "hand-written XLA loop": lambda data: handwritten_log_likelihood(
            hand_fn, data
        ),
    }
    first, times, values = {}, {name: [] for name in methods}, {}
    for name, call in methods.items():
        start = time.perf_counter()
        call(x[:LL_BATCH_SIZE])
        first[name] = time.perf_counter() - start
    for _ in range(LL_REPEATS):
        for name, call in methods.items():
            start = time.perf_counter()
            values[name] = np.asarray(call(x))
            times[name].append(time.perf_counter() - start)
    flops = log_likelihood_flops(len(x), num_samples)
    results = []
    for name in methods:
        finite = np.isfinite(values[name])
        seconds = statistics.median(times[name])
        results.append(LLResult(
            name=name,
            first_call_s=first[name],
            seconds=seconds,
            mean_log_px=(float(np.mean(values[name][finite]))
                         if finite.any() else float("nan")),
            non_finite=int(np.sum(~finite)),
            gflops=flops / seconds / 1e9,
        ))
    return results


# ---------------------------------------------------------------- reporting
def variant_label(model, jit_compile):
    return f"{model} ({'XLA' if jit_compile else 'no XLA'})"


def training_table(results, ceiling):
    lines = [
        "| model | batch | warm-up epoch (s) | median epoch (s) "
        "| CPU s / epoch | examples/s | train GFLOP/s | % of matmul | traces "
        "| final loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {variant_label(r.model, r.jit_compile)} | {r.batch_size} "
            f"| {r.warmup_s:.2f} | {r.epoch_s:.3f} | {r.cpu_epoch_s:.2f} "
            f"| {r.examples_per_s:,.0f} "
            f"| {r.gflops:.1f} | {100 * r.gflops / ceiling:.1f}% "
            f"| {r.traces} | {r.final_loss:.2f} |"
        )
    lines += [
        "",
        "CPU s / epoch: process CPU time (all threads) of the median "
        "epoch, the work done, which competing processes disturb much less "
        "than the wall time. % of matmul: of the better of the XLA and TF "
        "matmul rates. "
        "final loss: training loss of the last epoch, a check that each "
        "model trains (the two parameterise the posterior scale "
        "differently, softplus vs exp(log_var / 2)). traces: "
        "times the train step was traced; 2 is the normal count (TensorFlow "
        "traces a tf.function again when its first trace created variables, "
        "here Adam's slots), more would mean retracing.",
    ]
    return lines


def find(results, variant, batch_size):
    for r in results:
        if (r.model, r.jit_compile) == variant and r.batch_size == batch_size:
            return r
    return None


def _pick(preferred, batch_sizes, fallback):
    return preferred if preferred in batch_sizes else fallback(batch_sizes)


def ratio_lines(results, matmul):
    batch_sizes = sorted({r.batch_size for r in results})
    ratio_batch = _pick(RATIO_BATCH, batch_sizes, min)
    fraction_batch = _pick(FRACTION_BATCH, batch_sizes, max)
    lines = []
    for num, den in ((VAE_XLA, PLAIN_XLA), (VAE_XLA, PLAIN_NO_XLA)):
        a, b = find(results, num, ratio_batch), find(results, den, ratio_batch)
        lines.append(
            f"- {variant_label(*num)} / {variant_label(*den)} at batch "
            f"{ratio_batch}: {a.examples_per_s / b.examples_per_s:.2f}x"
        )
    a = find(results, VAE_XLA, fraction_batch)
    if a:
        parts = ", ".join(
            f"{100 * a.gflops / rate:.0f}% of the {kind} matmul "
            f"({rate:.1f} GFLOP/s)" for kind, rate in matmul.items()
        )
        lines.append(
            f"- {variant_label(*VAE_XLA)} at batch {fraction_batch}: "
            f"{a.gflops:.1f} GFLOP/s = {parts}"
        )
    return lines


def log_likelihood_lines(results, num_examples, num_samples):
    lines = [
        f"log p(x): {num_examples} examples x K={num_samples} importance "
        f"samples, {LL_BATCH_SIZE} examples per call, same trained weights; "
        f"first call on {LL_BATCH_SIZE} examples (tracing + XLA compilation), "
        f"then the median of {LL_REPEATS} timed calls on all examples:",
        "",
        "| method | first call (s) | seconds | examples/s | forward GFLOP/s "
        "| mean log p(x) | non-finite |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.first_call_s:.2f} | {r.seconds:.2f} "
            f"| {num_examples / r.seconds:,.1f} | {r.gflops:.1f} "
            f"| {r.mean_log_px:.2f} | {r.non_finite} |"
        )
    ours, hand = results
    lines += ["", f"- VAEModel.log_likelihood / hand-written time: "
                  f"{ours.seconds / hand.seconds:.2f}x"]
    return lines


def flops_lines(batch_sizes):
    per_example = train_step_flops(1)
    return [
        f"Train-step FLOPs = (1 + {BACKWARD_OVER_FORWARD}) x sum over Dense "
        "of 2*B*in*out (forward + backward ~ 2x forward) = "
        f"{per_example / 1e6:.2f} MFLOP per example; Dense (in x out): "
        + ", ".join(f"{i}x{o}" for i, o in dense_shapes()),
    ] + [
        f"- batch {b}: {train_step_flops(b) / 1e9:.3f} GFLOP per step"
        for b in batch_sizes
    ]


def load_average():
    try:
        return os.getloadavg()
    except OSError:
        return None


def load_line(suffix=""):
    load = load_average()
    if load is None:
        return "load average: unavailable"
    line = "load average (1/5/15 min): " + " ".join(f"{v:.2f}" for v in load)
    if load[0] > BUSY_LOAD_PER_CORE * (os.cpu_count() or 1):
        line += " -- the machine is busy: timings are noisy"
    return line + suffix


# --------------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, help="timed epochs (default 3)")
    p.add_argument("--examples", type=int, help="training examples (8192)")
    p.add_argument("--batch-sizes", type=int, nargs="+",
                   help="batch sizes (128 1024)")
    p.add_argument("--ll-examples", type=int,
                   help="examples for log_likelihood timing (500)")
    p.add_argument("--ll-samples", type=int,
                   help="importance samples K for log_likelihood (1000)")
    p.add_argument("--matmul-size", type=int, help="N of the N x N matmul")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for a smoke test")
    p.add_argument("--output", help="also write the markdown report here")
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


@dataclasses.dataclass
class Measurements:
    matmul: dict           # {"XLA": GFLOP/s, "TF": GFLOP/s}
    training: list         # TrainResult per (variant, batch size)
    log_likelihood: list   # LLResult: VAEModel, hand-written
    ll_examples: int
    watches: list          # (what, CpuWatch) for each phase


def measure(args):
    """Runs every benchmark, printing progress; returns the Measurements."""
    run_watch, watch = CpuWatch(), CpuWatch()
    matmul = matmul_ceiling(args.matmul_size, args.matmul_repeats)
    watches = [("the matmul", watch.stop())]
    print("matmul: " + ", ".join(f"{k} {v:.1f} GFLOP/s"
                                 for k, v in matmul.items()), flush=True)

    x = synthetic_binary_data(args.examples)
    training, trained_vae = [], None
    for batch_size in args.batch_sizes:
        watch = CpuWatch()
        results, models = time_training(x, batch_size, args.epochs)
        watches.append((f"training at batch {batch_size}", watch.stop()))
        training += results
        trained_vae = models[VAE_XLA]
        for r in results:
            print(f"  {variant_label(r.model, r.jit_compile)}, batch "
                  f"{batch_size}: {r.examples_per_s:,.0f} examples/s", flush=True)

    ll_x = x[:args.ll_examples]
    watch = CpuWatch()
    ll = time_log_likelihoods(trained_vae, ll_x, args.ll_samples)
    watches += [("the log p(x) timing", watch.stop()),
                ("the whole run", run_watch.stop())]
    return Measurements(matmul, training, ll, len(ll_x), watches)


def report_body(args, m, run_seconds):
    """The markdown lines after the machine header."""
    return [
        "",
        f"Data: {args.examples} synthetic binary examples x {INPUT_DIM} "
        f"(seed {DATA_SEED}); 1 warm-up + {args.epochs} timed epochs per "
        "model, variants interleaved epoch by epoch; median epoch. Matmul "
        f"{args.matmul_size}x{args.matmul_size} float32, best of "
        f"{args.matmul_repeats}: "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in m.matmul.items()) + ".",
        "",
        *training_table(m.training, max(m.matmul.values())),
        "",
        *flops_lines(args.batch_sizes),
        "",
        "Ratios:",
        "",
        *ratio_lines(m.training, m.matmul),
        "",
        *log_likelihood_lines(m.log_likelihood, m.ll_examples, args.ll_samples),
        "",
        f"- peak RSS: {peak_rss_mib():.0f} MiB",
        *[f"- {others_line(what, w)}" for what, w in m.watches],
        f"- total run time: {run_seconds:.0f} s",
    ]


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    header = ["# keras_vae throughput", ""] + [
        f"- {line}" for line in machine_info() + [load_line(" (at the start)")]
    ]
    print("\n".join(header), flush=True)
    measurements = measure(args)
    body = report_body(args, measurements, time.perf_counter() - start)
    print("\n".join(body))
    if args.output:
        with open(args.output, "w") as f:
            f.write("\n".join(header + body) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
