"""Inference over large arrays: VAEModel's methods vs its sub-models by hand.

The user's-story MLP VAE (784-512-256-(z 32), mirrored decoder, Bernoulli
likelihood), trained one epoch on synthetic binary data, then over
`--rows` rows (default 100,000):

```none
method          VAEModel                          by hand (XLA, --chunk rows per call)
encode          vae.encode(x)                     vae.encoder(x)
decode          vae.decode(z), z ~ N(0, I)        vae.decoder(z)
reconstruct     vae.reconstruct(x)                sigmoid(vae.decoder(loc)), loc from vae.encoder
elbo, K = 1     vae.elbo(x)                       baselines.bernoulli_is_fn: analytic KL,
log_likelihood  vae.log_likelihood(x, K)            log-sum-exp of K importance weights,
                                                    --chunk / K rows per call
```

and, as `throughput.py` measured before, `log_likelihood` with K = 1000 on
500 rows (by hand: 100 rows and 100 samples per call). The hand-written
side calls the model's own sub-models (`vae.encoder`, `vae.decoder`, the
same weights) through `tf.function(jit_compile=True)` on chunks of rows
and turns each output into NumPy, as VAEModel's methods do. VAEModel runs
with its defaults (`batch_size` 4096 for encode / decode / reconstruct; for
elbo / log_likelihood about 8,192 rows of K samples per call, 100 to 4,096
examples) and with `batch_size` = the hand-written rows per call.

Timing: each contestant is first called on its default batch size or one
chunk of rows (tracing and XLA compilation of the shapes the full call
needs), then the three take turns for `--repeats` timed calls on all
rows; the median is reported, and the speed of VAEModel relative to the
hand-written calls (hand time / VAEModel time; the goal is >= 0.67). The
outputs are compared: the deterministic ones to float32 rounding, the
sampled ones by their means.

    python benchmarks/inference_speed.py            # ~3-5 min on 2 CPU cores
    python benchmarks/inference_speed.py --quick    # smoke test
    python benchmarks/inference_speed.py --rows 20000 --output inference.md
"""

import inspect
import sys

import harness  # first: it sets TF's log level before TF is imported
import keras
import numpy as np
import tensorflow as tf

import baselines
from keras_vae.models.inference import examples_per_chunk

DIM, HIDDEN, LATENT = 784, (512, 256), 32
SEED, GOAL = 1, 0.67
DEFAULTS = {"rows": 100_000, "chunk": 10_000, "ll_samples": 10,
            "heavy_rows": 500, "heavy_samples": 1000, "repeats": 3,
            "epochs": 1, "train_examples": 8192}
QUICK = {"rows": 2_000, "chunk": 1_000, "ll_samples": 4, "heavy_rows": 0,
         "heavy_samples": 20, "repeats": 1, "epochs": 0,
         "train_examples": 256}   # heavy_rows 0: no K = 1000 case
HEAVY_PER_CALL = 100   # hand-written K = 1000 case: rows and samples per call


def by_hand(fn, x, rows):
    """fn over `x` in chunks of `rows` (the last one padded), as NumPy."""
    n, outs = len(x), []
    for start in range(0, n, rows):
        chunk = x[start:start + rows]
        if len(chunk) < rows:
            chunk = x[np.arange(start, start + rows) % n]
        out = fn(tf.constant(chunk))
        outs.append(tf.nest.map_structure(
            lambda t: np.asarray(t)[:min(rows, n - start)], out))
    return tf.nest.map_structure(lambda *p: np.concatenate(p), *outs)


def default_batch_size(vae, method, k):
    """The examples per call of `method` at its default `batch_size`."""
    b = inspect.signature(getattr(vae, method)).parameters[
        "batch_size"].default
    return examples_per_chunk(b, k) if b is None else b


def cases(vae, x, z, args):
    """(VAEModel method, its keyword arguments, K, hand-written fn(data),
    hand rows per call, data, how to compare) per case."""
    xla = lambda f: tf.function(f, jit_compile=True)  # noqa: E731
    encode = lambda a: vae.encoder(a, training=False)  # noqa: E731
    encoder, decoder = xla(encode), xla(
        lambda a: vae.decoder(a, training=False))
    recon = xla(lambda a: tf.sigmoid(vae.decoder(encode(a)[0],
                                                 training=False)))
    k, heavy_k = args.ll_samples, args.heavy_samples
    heavy_per_call = min(HEAVY_PER_CALL, heavy_k)
    is_fns = {kk: baselines.bernoulli_is_fn(encode, vae.decoder, kk,
                                            LATENT, xla_noise=False)
              for kk in {1, k, heavy_per_call}}

    def hand_is(kk, per_call, rows, which):
        return lambda a: baselines.importance_sampled(
            is_fns[per_call], per_call, a, kk, SEED, rows)[which]

    c, heavy_rows = args.chunk, min(HEAVY_PER_CALL, args.heavy_rows)
    heavy = [
        ("log_likelihood", {"num_samples": heavy_k, "seed": SEED}, heavy_k,
         hand_is(heavy_k, heavy_per_call, heavy_rows, 0), heavy_rows,
         x[:args.heavy_rows], "mean")] if args.heavy_rows else []
    return [
        ("encode", {}, "-", lambda a: by_hand(encoder, a, c), c, x, "exact"),
        ("decode", {}, "-", lambda a: by_hand(decoder, a, c), c, z, "exact"),
        ("reconstruct", {}, "-", lambda a: by_hand(recon, a, c), c, x,
         "exact"),
        ("elbo", {"seed": SEED}, 1, hand_is(1, 1, c, 1), c, x, "mean"),
        ("log_likelihood", {"num_samples": k, "seed": SEED}, k,
         hand_is(k, k, c // k, 0), c // k, x, "mean"),
    ] + heavy


def agreement(kind, ours, hand):
    if kind == "exact":
        ours, hand = (a if isinstance(a, (list, tuple)) else [a]
                      for a in (ours, hand))
        diff = max(float(np.max(np.abs(o - h))) for o, h in zip(ours, hand))
        return f"max abs diff {diff:.1e}"
    return f"mean {np.mean(ours):.3f} vs {np.mean(hand):.3f}"


def measure(vae, x, z, args):
    rows = []
    for method, kwargs, k, hand, per_call, data, kind in cases(vae, x, z,
                                                               args):
        ours = getattr(vae, method)
        calls = {"default": lambda a: ours(a, **kwargs),
                 "batch_size": lambda a: ours(a, batch_size=per_call,
                                              **kwargs),
                 "hand": hand}
        warm = data[:max(per_call, default_batch_size(vae, method, k))]
        out = {}
        timings = harness.take_turns(
            {key: (lambda f=f, key=key: out.__setitem__(key, f(data)))
             for key, f in calls.items()},
            rounds=args.repeats,
            first={key: (lambda f=f: f(warm)) for key, f in calls.items()})
        t = {key: timing.median for key, timing in timings.items()}
        c = {key: timing.median_cpu for key, timing in timings.items()}
        b = default_batch_size(vae, method, k)
        rows.append([
            method, f"{len(data):,}", k,
            f"{t['default']:.2f} / {c['default']:.2f} ({b:,})",
            f"{t['batch_size']:.2f} / {c['batch_size']:.2f} ({per_call:,})",
            f"{t['hand']:.2f} / {c['hand']:.2f}",
            f"**{t['hand'] / t['default']:.2f}x** / "
            f"{c['hand'] / c['default']:.2f}x",
            f"{t['hand'] / t['batch_size']:.2f}x / "
            f"{c['hand'] / c['batch_size']:.2f}x",
            agreement(kind, out["default"], out["hand"])])
        print(f"  {method} ({len(data):,} rows, K {k}): VAEModel "
              f"{t['default']:.2f} s, batch_size={per_call} "
              f"{t['batch_size']:.2f} s, by hand {t['hand']:.2f} s",
              flush=True)
    return rows


def main(argv=None):
    p = harness.parser(__doc__, f"smoke test: {QUICK}")
    for name, default in DEFAULTS.items():
        p.add_argument("--" + name.replace("_", "-"), type=int,
                       help=f"default {default}")
    args = harness.fill(p.parse_args(argv), DEFAULTS, QUICK)
    harness.positive(p, args, *(n for n in DEFAULTS
                                if n not in ("epochs", "heavy_rows")))
    report = harness.Report("Inference over large arrays")
    keras.utils.set_random_seed(SEED)
    vae = baselines.compile_vae(baselines.mlp_vae(DIM, HIDDEN, LATENT, SEED))
    if args.epochs:
        vae.fit(harness.dataset(harness.synthetic_binary(args.train_examples),
                                128, shuffle_seed=0),
                epochs=args.epochs, verbose=0, shuffle=False)
    x = harness.synthetic_binary(args.rows, seed=SEED)
    z = np.random.default_rng(SEED).standard_normal(
        (args.rows, LATENT)).astype("float32")
    rows = measure(vae, x, z, args)
    report.add(
        f"MLP VAE {DIM}-{'-'.join(map(str, HIDDEN))}-(z {LATENT}), trained "
        f"{args.epochs} epoch(s); synthetic binary rows; median of "
        f"{args.repeats} alternating calls after a compiling first call.",
        "",
        *harness.table(
            ["method", "rows", "K", "VAEModel (default batch_size)",
             "VAEModel, batch_size=B (B)", "by hand, B rows per call",
             "speed vs by hand", "with batch_size=B", "outputs"], rows,
            "lrrrrrrrl"),
        "",
        "Seconds as wall / process CPU time (all threads; CPU time is much "
        "less disturbed by other processes). Speed = hand-written time / "
        f"VAEModel time, wall / CPU (goal >= {GOAL}x), VAEModel at its "
        "default batch_size and at the hand-written rows per call (B).")
    report.emit(args.output)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
