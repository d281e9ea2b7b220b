"""Compare vector quantizers in a VQ-VAE on 8x8 digits, and a hand-written one.

One small convolutional VQ-VAE (8x8 digit -> 4x4 grid of 16-dimensional
features -> quantizer -> 8x8 digit) is trained with each quantizer of
keras_vae at two codebook sizes K, and once more as a hand-written Keras
VQ-VAE in the style of the keras.io example (its own quantizer layer with
the codebook and commitment losses, a `keras.Model` subclass with its own
`train_step`), all in one run on the same data and seeds:

```none
codebook loss      VectorQuantizer(K, ema_decay=None, restart_after_steps=None)
EMA                VectorQuantizer(K, restart_after_steps=None)
EMA+restart+kmeans VectorQuantizer(K, kmeans_init=True, restart_after_steps=50)
RVQ                ResidualVectorQuantizer(2, sqrt(K))     (K combinations)
FSQ                FiniteScalarQuantizer(levels)           (prod(levels) ~ K)
keras.io style     hand-written: codebook loss + commitment, uniform(+-0.05) init
```

Every model minimises the same loss: the keras_vae models use
`GaussianNLL(scale=sigma)` with 2 sigma^2 = 64 Var(x), so that their
reconstruction term equals the hand-written model's mean squared error
divided by the data variance (the keras.io example's loss), plus the same
commitment cost 0.25 (and, without EMA, the codebook loss). The keras_vae
models are `VAEModel`s: their ELBO is -reconstruction - 16 log K nats (16
positions of K codes). All train with Adam and XLA.

Measured per model (written to --out/results.json and results.md):
codebook usage (the fraction of the K codes used by the encoded training
set at the end; for RVQ a code is the pair of stage codes) and
perplexity (exp of the entropy of those codes' frequencies: the number of
codes effectively used), reconstruction MSE on the held-out digits, steps
to converge (the first evaluation, once per epoch, whose held-out MSE is
within 5% of the final one), steps to reach a held-out MSE of 0.01 (a
fixed target: the first comparison says when a curve flattens, this one
how fast it gets somewhere) and the step time (median epoch time after
the first, which includes compilation, divided by the steps per epoch).

Finally it shows `encode_codes` / `decode_codes` on a held-out digit with
the EMA+restart+kmeans model: the 4x4 grid of integer codes, and that
decoding those codes gives exactly its reconstruction.

Data: scikit-learn's bundled 8x8 digits (no download), grey levels scaled
to [0, 1], with the seeded 80/20 split of `mnist_vae.py` (1437 train, 360
held out).

Run from the repository root:
    python examples/vq_vae_digits.py                  # ~6 min on 2 CPU cores
    python examples/vq_vae_digits.py --quick --out /tmp/vq_smoke
"""

import argparse
import json
import math
import pathlib
import time

from _quiet_tf import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()  # TF's C++ start-up lines off (see _quiet_tf.py)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402
from mnist_vae import positive_int  # noqa: E402

CODE_DIM = 16           # features per position (as the keras.io example)
COMMITMENT = 0.25       # beta of the commitment loss, every model
RESTART_AFTER = 50      # idle steps before a code is re-seeded
SIZES = (64, 1024)      # codebook sizes K of the full run
QUICK_SIZES = (16,)
FSQ_LEVELS = {16: [4, 4], 64: [4, 4, 4], 1024: [8, 5, 5, 5]}
CONVERGED = 0.05        # "converged": held-out MSE within 5% of the final
REACH_MSE = 0.01        # the held-out MSE whose first epoch is reported
DIGITS_TEST_FRACTION = 0.2
VARIANTS = ("codebook loss", "EMA", "EMA+restart+kmeans", "RVQ", "FSQ",
            "keras.io style")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--epochs", type=positive_int, default=40,
        help="training epochs per model (default: %(default)s)")
    add("--batch-size", type=positive_int, default=64,
        help="examples per step (default: %(default)s)")
    add("--learning-rate", type=float, default=2e-3,
        help="Adam learning rate (default: %(default)s)")
    add("--out", type=pathlib.Path,
        default=pathlib.Path("outputs/vq_vae_digits"),
        help="output directory (default: %(default)s)")
    add("--seed", type=int, default=0, help="seed of the split, weights, "
        "codebooks and shuffling (default: 0)")
    add("--quick", action="store_true", help="smoke test: K = 16 only, 3 "
        "epochs on 512 training digits, no XLA")
    return p.parse_args(argv)


# ------------------------------------------------------------------ data
def load_digits(seed):
    """(x_train, x_test): 8x8x1 float32 images in [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    x = (sklearn_digits().data / 16.0).astype("float32").reshape(-1, 8, 8, 1)
    return train_test_split(x, test_size=DIGITS_TEST_FRACTION,
                            random_state=seed)


# ---------------------------------------------------------------- models
def encoder(x_in, out_channels=CODE_DIM, unit_scale=False):
    h = keras.layers.Conv2D(32, 3, strides=2, padding="same",
                            activation="relu")(x_in)            # 4x4x32
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    if unit_scale:  # FSQ: features at the scale of its fixed grid
        h = keras.layers.LayerNormalization()(h)
    return keras.layers.Conv2D(out_channels, 1)(h)              # 4x4xD


def decoder(z):
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(z)
    h = keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same",
                                     activation="relu")(h)      # 8x8x32
    return keras.layers.Conv2D(1, 3, padding="same")(h)         # the mean


def make_quantizer(variant, k, seed):
    """The keras_vae quantizer of `variant` with about K codes."""
    if variant == "codebook loss":
        return keras_vae.VectorQuantizer(
            k, COMMITMENT, ema_decay=None, restart_after_steps=None,
            seed=seed)
    if variant == "EMA":
        return keras_vae.VectorQuantizer(k, COMMITMENT,
                                         restart_after_steps=None, seed=seed)
    if variant == "EMA+restart+kmeans":
        return keras_vae.VectorQuantizer(
            k, COMMITMENT, kmeans_init=True,
            restart_after_steps=RESTART_AFTER, seed=seed)
    if variant == "RVQ":
        return keras_vae.ResidualVectorQuantizer(
            2, math.isqrt(k), COMMITMENT, kmeans_init=True,
            restart_after_steps=RESTART_AFTER, seed=seed)
    return keras_vae.FiniteScalarQuantizer(FSQ_LEVELS[k])


def build_vq_vae(quantizer):
    """The VQ-VAE: encoder -> quantizer -> decoder, a `VAEModel`."""
    x_in = keras.Input((8, 8, 1), name="x")
    if isinstance(quantizer, keras_vae.FiniteScalarQuantizer):
        # FSQ rounds to a fixed grid: features of this encoder start near
        # 0 (std ~0.04), all round to the grid's centre, exactly 0, and
        # the decoder's first ReLU passes no gradient. At unit scale
        # (LayerNormalization before the projection) FSQ trains.
        z_e = encoder(x_in, len(quantizer.levels), unit_scale=True)
    else:
        z_e = encoder(x_in)
    z_q = quantizer(z_e)
    return keras_vae.VAEModel(x_in, decoder(z_q), name="vq_vae")


class HandWrittenQuantizer(keras.layers.Layer):
    """A VQ layer as tutorials write it (keras.io's VQ-VAE): nearest code
    by matmul distances, codebook loss + commitment loss by `add_loss`,
    straight-through output; codebook initialised uniform in +-0.05."""

    def __init__(self, num_codes, code_dim, beta, seed, **kwargs):
        super().__init__(**kwargs)
        self.num_codes, self.beta = num_codes, beta
        self.codebook = self.add_weight(
            shape=(code_dim, num_codes), name="codebook",
            initializer=keras.initializers.RandomUniform(-0.05, 0.05,
                                                         seed=seed))

    def codes(self, x):
        flat = tf.reshape(x, [-1, tf.shape(x)[-1]])
        distances = (tf.reduce_sum(flat ** 2, 1, keepdims=True)
                     + tf.reduce_sum(self.codebook ** 2, 0)
                     - 2.0 * tf.matmul(flat, self.codebook))
        return tf.reshape(tf.argmin(distances, 1), tf.shape(x)[:-1])

    def call(self, x):
        one_hot = tf.one_hot(self.codes(x), self.num_codes)
        quantized = tf.matmul(one_hot, self.codebook, transpose_b=True)
        self.add_loss(self.beta * tf.reduce_mean(
            (tf.stop_gradient(quantized) - x) ** 2))        # commitment
        self.add_loss(tf.reduce_mean(
            (quantized - tf.stop_gradient(x)) ** 2))        # codebook
        return x + tf.stop_gradient(quantized - x)


class HandWrittenVQVAE(keras.Model):
    """The keras.io pattern: a functional VQ-VAE trained by a
    `keras.Model` subclass whose `train_step` adds the quantizer's losses
    to the reconstruction error divided by the data variance."""

    def __init__(self, num_codes, train_variance, seed, **kwargs):
        super().__init__(**kwargs)
        self.train_variance = float(train_variance)
        self.quantizer = HandWrittenQuantizer(num_codes, CODE_DIM,
                                              COMMITMENT, seed)
        x_in = keras.Input((8, 8, 1))
        z_e = encoder(x_in)
        self.encoder = keras.Model(x_in, z_e)
        z_in = keras.Input(z_e.shape[1:])
        self.decoder = keras.Model(z_in, decoder(z_in))
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, x):
        return self.decoder(self.quantizer(self.encoder(x)))

    def train_step(self, x):
        with tf.GradientTape() as tape:
            reconstruction = self(x)
            loss = (tf.reduce_mean((x - reconstruction) ** 2)
                    / self.train_variance) + tf.add_n(self.quantizer.losses)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]


# ------------------------------------------------------------- measuring
class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch (the first includes compilation)."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


class HeldOutMSE(keras.callbacks.Callback):
    """Held-out reconstruction MSE after each epoch (runs after the timer)."""

    def __init__(self, reconstruct, x_test):
        super().__init__()
        self.reconstruct, self.x_test, self.curve = reconstruct, x_test, []

    def on_epoch_end(self, epoch, logs=None):
        self.curve.append(float(np.mean(
            (self.reconstruct(self.x_test) - self.x_test) ** 2)))


def code_statistics(codes, num_codes):
    """(usage, perplexity) of integer codes: the fraction of the codes
    that occur, and exp(entropy of their frequencies)."""
    counts = np.bincount(codes.ravel(), minlength=num_codes)
    p = counts[counts > 0] / counts.sum()
    return len(p) / num_codes, float(np.exp(-(p * np.log(p)).sum()))


def flat_codes(codes, quantizer):
    """One integer per position: an RVQ pair (k1, k2) is k1 + K k2."""
    if isinstance(quantizer, keras_vae.ResidualVectorQuantizer):
        return codes[..., 0] + quantizer.num_codes * codes[..., 1]
    return codes


def train_and_measure(variant, k, data, args):
    x_train, x_test = data
    keras.utils.set_random_seed(args.seed)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    variance = float(np.var(x_train))
    optimizer = keras.optimizers.Adam(args.learning_rate)
    jit = not args.quick  # compiling would take most of a smoke test
    if variant == "keras.io style":
        model = HandWrittenVQVAE(k, variance, args.seed)
        model.compile(optimizer=optimizer, jit_compile=jit)
        forward = tf.function(lambda x: model(x), jit_compile=jit)
        reconstruct = lambda x: forward(x).numpy()  # noqa: E731
        num_codes = k

        def encode_codes(x):
            return model.quantizer.codes(model.encoder(x)).numpy()
    else:
        quantizer = make_quantizer(variant, k, args.seed)
        model = build_vq_vae(quantizer)
        # Gaussian NLL = sum (x - mean)^2 / (2 sigma^2) + c: the
        # hand-written loss's mean((x - mean)^2) / Var(x) when
        # 2 sigma^2 = 64 Var(x).
        sigma = math.sqrt(32.0 * variance)
        model.compile(optimizer=optimizer,
                      loss=keras_vae.losses.GaussianNLL(scale=sigma),
                      jit_compile=jit)
        reconstruct = model.reconstruct
        num_codes = quantizer.num_codes
        if isinstance(quantizer, keras_vae.ResidualVectorQuantizer):
            num_codes = quantizer.num_codes ** quantizer.num_quantizers

        def encode_codes(x):
            return flat_codes(model.encode_codes(x), quantizer)
    dataset = (tf.data.Dataset.from_tensor_slices(x_train)
               .shuffle(len(x_train), seed=args.seed)
               .batch(args.batch_size).prefetch(tf.data.AUTOTUNE))
    timer, held_out = EpochTimer(), HeldOutMSE(reconstruct, x_test)
    model.fit(dataset, epochs=args.epochs, verbose=0, shuffle=False,
              callbacks=[timer, held_out])
    usage, perplexity = code_statistics(encode_codes(x_train), num_codes)
    timed = timer.times[1:] or timer.times
    return model, {
        "variant": variant, "codes": num_codes, "usage": usage,
        "perplexity": perplexity,
        **convergence(held_out.curve, steps_per_epoch),
        "step_ms": 1000.0 * float(np.median(timed)) / steps_per_epoch,
        "steps_per_epoch": steps_per_epoch, "mse_curve": held_out.curve,
    }


def convergence(curve, steps_per_epoch):
    """The final held-out MSE of a per-epoch `curve`, the steps to come
    within 5% of it, and the steps to reach `REACH_MSE` (None: never)."""
    final = curve[-1]
    first = next(i for i, mse in enumerate(curve)
                 if mse <= (1.0 + CONVERGED) * final)
    reach = next((i for i, mse in enumerate(curve) if mse <= REACH_MSE),
                 None)
    return {"test_mse": final,
            "steps_to_converge": (first + 1) * steps_per_epoch,
            "steps_to_mse": None if reach is None
            else (reach + 1) * steps_per_epoch}


def table(rows):
    lines = ["| quantizer | codes | usage | perplexity | held-out MSE | "
             f"steps to converge | steps to MSE {REACH_MSE} | step (ms) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        reach = r["steps_to_mse"]
        lines.append(
            f"| {r['variant']} | {r['codes']} | {r['usage']:.2f} | "
            f"{r['perplexity']:.1f} | {r['test_mse']:.4f} | "
            f"{r['steps_to_converge']} | {'-' if reach is None else reach}"
            f" | {r['step_ms']:.1f} |")
    return "\n".join(lines)


def show_codes(vae, x):
    """encode_codes / decode_codes on one digit."""
    codes = vae.encode_codes(x[:1])
    print("Codes of the first held-out digit (4x4 positions):")
    for row in codes[0]:
        print("   " + " ".join(f"{c:4d}" for c in row))
    decoded = vae.decode_codes(codes)
    same = float(np.max(np.abs(decoded - vae.reconstruct(x[:1]))))
    print(f"decode_codes(encode_codes(x)) vs reconstruct(x): max |diff| "
          f"{same:.1e}")
    return codes[0], same


def main(argv=None):
    args = parse_args(argv)
    # Each model compiles its own functions from the same code; TF counts
    # them as one function "retracing" and warns. Nothing is wrong.
    tf.get_logger().setLevel("ERROR")
    x_train, x_test = load_digits(args.seed)
    sizes = QUICK_SIZES if args.quick else SIZES
    if args.quick:
        x_train = x_train[:512]
        args.epochs = min(args.epochs, 3)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"Data: scikit-learn digits 8x8, {len(x_train)} train / "
          f"{len(x_test)} held out; {args.epochs} epochs of batch "
          f"{args.batch_size} per model, K in {list(sizes)}")
    rows, shown = [], None
    start = time.perf_counter()
    for k in sizes:
        for variant in VARIANTS:
            model, row = train_and_measure(variant, k, (x_train, x_test),
                                           args)
            row["size"] = k
            rows.append(row)
            print(f"K={k:5d} {variant:20s} usage {row['usage']:.2f}  "
                  f"perplexity {row['perplexity']:7.1f}  held-out MSE "
                  f"{row['test_mse']:.4f}  converged at step "
                  f"{row['steps_to_converge']:5d}  {row['step_ms']:.1f} "
                  "ms/step", flush=True)
            if variant == "EMA+restart+kmeans" and shown is None:
                shown = show_codes(model, x_test)
    elapsed = time.perf_counter() - start
    markdown = "\n\n".join(
        f"K = {k}:\n\n" + table([r for r in rows if r["size"] == k])
        for k in sizes)
    print("\n" + markdown)
    print(f"\nTotal time: {elapsed:.0f} s")
    (args.out / "results.md").write_text(markdown + "\n")
    (args.out / "results.json").write_text(json.dumps({
        "rows": rows, "epochs": args.epochs, "batch_size": args.batch_size,
        "train_examples": len(x_train), "test_examples": len(x_test),
        "seconds": elapsed, "codes_shown": shown[0].tolist(),
        "decode_codes_max_diff": shown[1],
    }, indent=1))
    return rows


if __name__ == "__main__":
    main()
