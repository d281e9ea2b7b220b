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
3. the machine's dense float32 matmul throughput (an XLA-compiled N x N
   `tf.matmul`), as the ceiling the training steps are compared with.

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
python benchmarks/throughput.py                 # default, ~3-4 min on 2 cores
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

# Ratios printed at the end: (label, numerator, denominator, batch size);
# variants are named by (model, jit_compile).
VAE_XLA = ("VAEModel", True)
VAE_NO_XLA = ("VAEModel", False)
PLAIN_XLA = ("plain Keras", True)
PLAIN_NO_XLA = ("plain Keras", False)
VARIANTS = (VAE_XLA, VAE_NO_XLA, PLAIN_NO_XLA, PLAIN_XLA)
RATIO_BATCH = 128
FRACTION_BATCH = 1024


# ------------------------------------------------------------------ machine
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info():
    return [
        f"date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"cpu: {cpu_model()}, {os.cpu_count()} logical cores",
        f"python {platform.python_version()}, tensorflow {tf.__version__}, "
        f"keras {keras.__version__}, keras_vae {keras_vae.__version__}",
        f"platform: {platform.platform()}",
    ]


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


def mlp(x, units):
    for u in units:
        x = keras.layers.Dense(u, activation="relu")(x)
    return x


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


class Sampling(keras.layers.Layer):
    """keras.io: z = z_mean + exp(z_log_var / 2) * eps."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(
            keras.ops.shape(z_mean), seed=self.seed_generator
        )
        return z_mean + keras.ops.exp(0.5 * z_log_var) * eps


class PlainVAE(keras.Model):
    """keras.io's VAE: encoder/decoder models and a custom train_step."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def call(self, x):
        return self.decoder(self.encoder(x)[2])

    def train_step(self, data):
        x = data
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(x, training=True)
            logits = self.decoder(z, training=True)
            reconstruction = keras.ops.mean(
                keras.ops.sum(
                    keras.ops.binary_crossentropy(x, logits, from_logits=True),
                    axis=-1,
                )
            )
            kl = keras.ops.mean(
                -0.5 * keras.ops.sum(
                    1.0 + z_log_var - keras.ops.square(z_mean)
                    - keras.ops.exp(z_log_var),
                    axis=-1,
                )
            )
            loss = reconstruction + kl
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}


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
    """Wall time of every epoch."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


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
    examples_per_s: float
    gflops: float
    traces: int
    final_loss: float


def time_training(name, jit_compile, x, batch_size, epochs):
    """Fresh model, one warm-up epoch, `epochs` timed ones; returns result."""
    keras.utils.set_random_seed(MODEL_SEED)
    model = BUILDERS[name](jit_compile)
    counter = count_traces(model)
    timer = EpochTimer()
    history = model.fit(
        make_dataset(x, batch_size), epochs=1 + epochs, callbacks=[timer],
        shuffle=False, verbose=0,  # the pipeline decides the order
    )
    steps = len(x) // batch_size
    epoch_s = statistics.median(timer.times[1:])
    examples_per_s = steps * batch_size / epoch_s
    return model, TrainResult(
        model=name,
        jit_compile=jit_compile,
        batch_size=batch_size,
        warmup_s=timer.times[0],
        epoch_s=epoch_s,
        examples_per_s=examples_per_s,
        gflops=steps * train_step_flops(batch_size) / epoch_s / 1e9,
        traces=counter["traces"],
        final_loss=float(history.history["loss"][-1]),
    )


# ------------------------------------------------------------------- matmul
def matmul_gflops(size, repeats):
    """Median GFLOP/s of an XLA-compiled float32 size x size matmul."""
    a = tf.random.stateless_normal((size, size), seed=(DATA_SEED, 1))
    b = tf.random.stateless_normal((size, size), seed=(DATA_SEED, 2))
    matmul = tf.function(tf.linalg.matmul, jit_compile=True)
    matmul(a, b).numpy()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()  # the whole product: XLA cannot slice it away
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


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
        fn(tf.constant(x[s:s + batch_size]), tf.constant(LL_SEED)).numpy()
        for s in range(0, len(x), batch_size)
    ]
    return np.concatenate(out)


@dataclasses.dataclass
class LLResult:
    name: str
    seconds: float
    mean_log_px: float
    gflops: float


def time_call(fn, warmup_args, args):
    """Warm-up call (compiles every shape), then one timed call."""
    fn(*warmup_args)
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def time_log_likelihoods(vae, x, num_samples):
    flops = log_likelihood_flops(len(x), num_samples)
    warm = x[:LL_BATCH_SIZE]

    def ours(data):
        return vae.log_likelihood(
            data, num_samples=num_samples, batch_size=LL_BATCH_SIZE
        )

    fn = handwritten_log_likelihood_fn(vae, num_samples)

    def handwritten(data):
        return handwritten_log_likelihood(fn, data)

    results = []
    for name, call in (("VAEModel.log_likelihood", ours),
                       ("hand-written XLA loop", handwritten)):
        seconds, values = time_call(call, (warm,), (x,))
        results.append(
            LLResult(name, seconds, float(np.mean(values)), flops / seconds / 1e9)
        )
    return results


# ---------------------------------------------------------------- reporting
def variant_label(model, jit_compile):
    return f"{model} ({'XLA' if jit_compile else 'no XLA'})"


def training_table(results, peak_gflops):
    lines = [
        "| model | batch | warm-up epoch (s) | median epoch (s) | examples/s "
        "| train GFLOP/s | % of matmul | traces | final loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {variant_label(r.model, r.jit_compile)} | {r.batch_size} "
            f"| {r.warmup_s:.2f} | {r.epoch_s:.3f} | {r.examples_per_s:,.0f} "
            f"| {r.gflops:.1f} | {100 * r.gflops / peak_gflops:.1f}% "
            f"| {r.traces} | {r.final_loss:.2f} |"
        )
    return lines


def find(results, variant, batch_size):
    for r in results:
        if (r.model, r.jit_compile) == variant and r.batch_size == batch_size:
            return r
    return None


def ratio_lines(results, peak_gflops):
    lines = []
    pairs = (
        (VAE_XLA, PLAIN_XLA),
        (VAE_XLA, PLAIN_NO_XLA),
    )
    for num, den in pairs:
        a, b = find(results, num, RATIO_BATCH), find(results, den, RATIO_BATCH)
        if a and b:
            lines.append(
                f"- {variant_label(*num)} / {variant_label(*den)} at batch "
                f"{RATIO_BATCH}: {a.examples_per_s / b.examples_per_s:.2f}x"
            )
    a = find(results, VAE_XLA, FRACTION_BATCH)
    if a:
        lines.append(
            f"- {variant_label(*VAE_XLA)} at batch {FRACTION_BATCH}: "
            f"{a.gflops:.1f} GFLOP/s = {100 * a.gflops / peak_gflops:.1f}% of "
            f"matmul ({peak_gflops:.1f} GFLOP/s)"
        )
    return lines


def log_likelihood_lines(results, num_examples, num_samples):
    lines = [
        f"log p(x), {num_examples} examples x K={num_samples} samples, "
        f"{LL_BATCH_SIZE} examples per call (timed after a warm-up call):",
        "",
        "| method | seconds | examples/s | forward GFLOP/s | mean log p(x) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.seconds:.2f} | {num_examples / r.seconds:,.0f} "
            f"| {r.gflops:.1f} | {r.mean_log_px:.2f} |"
        )
    ours, hand = results
    lines += ["", f"- VAEModel.log_likelihood / hand-written time: "
                  f"{ours.seconds / hand.seconds:.2f}x"]
    return lines


def flops_lines(batch_sizes):
    per_example = train_step_flops(1)
    return [
        "Train-step FLOPs = (1 + 2) x sum_Dense 2*B*in*out "
        f"(forward + backward ~ 2x forward) = {per_example / 1e6:.2f} MFLOP "
        "per example; Dense (in, out): "
        + ", ".join(f"{i}x{o}" for i, o in dense_shapes()),
    ] + [
        f"  batch {b}: {train_step_flops(b) / 1e9:.3f} GFLOP per step"
        for b in batch_sizes
    ]


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


def main(argv=None):
    args = parse_args(argv)
    wall_start = time.perf_counter()
    report = ["# keras_vae throughput", ""] + [f"- {l}" for l in machine_info()]
    print("\n".join(report), flush=True)

    peak = matmul_gflops(args.matmul_size, args.matmul_repeats)
    print(f"matmul {args.matmul_size}x{args.matmul_size} float32 (XLA): "
          f"{peak:.1f} GFLOP/s", flush=True)

    x = synthetic_binary_data(args.examples)
    results, trained_vae = [], None
    for batch_size in args.batch_sizes:
        for name, jit in VARIANTS:
            model, result = time_training(name, jit, x, batch_size, args.epochs)
            results.append(result)
            print(f"  {variant_label(name, jit)}, batch {batch_size}: "
                  f"{result.examples_per_s:,.0f} examples/s", flush=True)
            if (name, jit) == VAE_XLA:
                trained_vae = model

    ll = time_log_likelihoods(
        trained_vae, x[:args.ll_examples], args.ll_samples
    )

    report += [
        "",
        f"{args.examples} examples x {INPUT_DIM}, 1 warm-up + {args.epochs} "
        f"timed epochs, median epoch; matmul {args.matmul_size}^3 XLA: "
        f"{peak:.1f} GFLOP/s",
        "",
        *training_table(results, peak),
        "",
        *flops_lines(args.batch_sizes),
        "",
        *ratio_lines(results, peak),
        "",
        *log_likelihood_lines(ll, args.ll_examples, args.ll_samples),
        "",
        f"- peak RSS: {peak_rss_mib():.0f} MiB",
        f"- total run time: {time.perf_counter() - wall_start:.0f} s",
    ]
    text = "\n".join(report)
    print("\n" + "\n".join(report[len(machine_info()) + 2:]))
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
