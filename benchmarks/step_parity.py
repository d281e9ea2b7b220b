"""Train-step speed of VAEModel against the leanest hand-written step.

One process, one machine, the user's-story MLP (784-512-256-(z 32), mirrored
decoder, Bernoulli likelihood, Adam 1e-3), 8192 synthetic binary vectors
through the same cached `tf.data` pipeline. Contestants, each XLA-compiled
(`jit_compile=True`) and trained by `fit`:

```none
lean       the keras.io pattern stripped to the bone: a keras.Model whose
           train_step draws eps with tf.random.normal, computes BCE + analytic
           KL, applies Adam and returns the loss; no metric trackers
keras.io   the keras.io pattern as published: `Sampling` layer with
           keras.random noise, three Mean trackers (benchmarks/common.py)
VAEModel   keras_vae.VAEModel, its default compile (ELBO, K = 1)
```

and, to find where VAEModel's time goes, VAEModel with parts of its step
removed (subclasses below; the package is not changed):

```none
- skip guard      no select that keeps the old weights after a non-finite loss
- counters        no non-finite counters
- trackers        no Mean trackers (returns the loss only)
```

Timing: the contestants alternate epoch by epoch (so machine load hits
them alike) after one warm-up epoch each; examples/s from the median of
`--epochs` epochs. Ratios are against `lean` and `keras.io` measured in the
same run.

    python benchmarks/step_parity.py [--epochs 3] [--batch-sizes 128 1024] [--quick]
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402
from common import PlainVAE, Sampling, cpu_model, emit, mlp  # noqa: E402

D, HIDDEN, LATENT = 784, (512, 256), 32


class LeanVAE(keras.Model):
    """The leanest step a good engineer would write (see the module doc)."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder

    def call(self, x):
        return self.decoder(self.encoder(x)[0])

    def train_step(self, x):
        with tf.GradientTape() as tape:
            mean, log_var = self.encoder(x, training=True)
            z = mean + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mean))
            logits = self.decoder(z, training=True)
            rec = tf.reduce_mean(tf.reduce_sum(
                tf.nn.sigmoid_cross_entropy_with_logits(x, logits), -1))
            kl = tf.reduce_mean(-0.5 * tf.reduce_sum(
                1.0 + log_var - tf.square(mean) - tf.exp(log_var), -1))
            loss = rec + kl
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return {"loss": loss}


def _encoder_decoder(sampling):
    x_in = keras.Input((D,))
    h = mlp(x_in, HIDDEN)
    outs = [keras.layers.Dense(LATENT)(h), keras.layers.Dense(LATENT)(h)]
    if sampling:
        outs.append(Sampling(seed=0)(outs))
    z_in = keras.Input((LATENT,))
    dec = keras.Model(z_in, keras.layers.Dense(D)(mlp(z_in, HIDDEN[::-1])))
    return keras.Model(x_in, outs), dec


class _Ablated(keras_vae.VAEModel):
    """VAEModel with parts of its train step removed (profiling only): it
    overrides the step's pieces, so the rest is the package's own step."""

    drop = ()

    def _apply_update(self, grads, weights, loss):
        if "skip guard" in self.drop:
            self.optimizer.apply_gradients(zip(grads, weights))
        else:
            super()._apply_update(grads, weights, loss)

    def _count_nonfinite(self, loss, values):
        if "counters" not in self.drop:
            super()._count_nonfinite(loss, values)

    def _update_metrics(self, loss, values, batch):
        if "trackers" in self.drop:
            return {"loss": loss}
        return super()._update_metrics(loss, values, batch)


def vae_model(drop=()):
    x_in = keras.Input((D,))
    q = keras_vae.KLRegularizer()(
        keras_vae.GaussianEncoderHead(LATENT)(mlp(x_in, HIDDEN)))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    logits = keras.layers.Dense(D)(mlp(z, HIDDEN[::-1]))
    if not drop:
        model = keras_vae.VAEModel(x_in, logits)
    else:
        model = type("Ablated", (_Ablated,), {"drop": drop})(x_in, logits)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras_vae.losses.BernoulliNLL())
    return model


def contestants(profile):
    out = {
        "lean": lambda: LeanVAE(*_encoder_decoder(False)),
        "keras.io": lambda: PlainVAE(*_encoder_decoder(True)),
        "VAEModel": vae_model,
    }
    if profile:
        out["VAEModel - skip guard"] = lambda: vae_model(("skip guard",))
        out["VAEModel - skip guard, counters"] = lambda: vae_model(
            ("skip guard", "counters"))
        out["VAEModel - skip guard, counters, trackers"] = lambda: vae_model(
            ("skip guard", "counters", "trackers"))
    return out


def measure(batch, epochs, data, profile):
    ds = (tf.data.Dataset.from_tensor_slices(data).cache()
          .batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    models = {}
    for name, make in contestants(profile).items():
        keras.utils.set_random_seed(0)
        model = make()
        if not isinstance(model, keras_vae.VAEModel):
            model.compile(optimizer=keras.optimizers.Adam(1e-3),
                          jit_compile=True)
        model.fit(ds, epochs=1, verbose=0)  # trace + compile
        models[name] = model
    times = {name: [] for name in models}
    for _ in range(epochs):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - start)
    n = (len(data) // batch) * batch
    return {name: n / statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+",
                        default=[128, 1024])
    parser.add_argument("--examples", type=int, default=8192)
    parser.add_argument("--no-profile", action="store_true",
                        help="skip the ablated VAEModel variants")
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch, 1024 examples, batch 128 (smoke run)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.examples, args.batch_sizes = 1, 1024, [128]
    rng = np.random.default_rng(0)
    data = (rng.random((args.examples, D)) < 0.3).astype("float32")
    lines = [
        f"Train-step speed, MLP 784-512-256-(z 32), Adam, XLA, "
        f"{args.examples} examples, median of {args.epochs} alternating "
        f"epochs; {cpu_model()}, {os.cpu_count()} cores, TF "
        f"{tf.__version__}, Keras {keras.__version__}; load "
        f"{os.getloadavg()[0]:.2f} at start",
        "",
        "| batch | step | examples/s | vs lean | vs keras.io |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for batch in args.batch_sizes:
        rates = measure(batch, args.epochs, data, not args.no_profile)
        for name, rate in rates.items():
            lines.append(
                f"| {batch} | {name} | {rate:,.0f} | "
                f"{rate / rates['lean']:.2f}x | "
                f"{rate / rates['keras.io']:.2f}x |")
            print(lines[-1], flush=True)
    emit(lines, args.output)


if __name__ == "__main__":
    sys.exit(main())
