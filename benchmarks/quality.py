"""Model quality: test log-likelihood and ELBO by training objective.

One MLP VAE, trained from the same initial weights, on the same data, for
the same epochs, batch size and seed, by each of:

```none
VAEModel  ELBO K=1    loss = -log p(x|z) + KL(q || p)                      (1 sample)
VAEModel  ELBO K=5    loss = -(1/5) sum_k log p(x|z_k) + KL                 (5 samples)
VAEModel  IWAE K=5    loss = -log (1/5)  sum_k p(x|z_k) p(z_k) / q(z_k|x)   (Burda et al. 2015)
VAEModel  IWAE K=50   loss = -log (1/50) sum_k ...
plain Keras ELBO K=1  the keras.io VAE: a `Sampling` layer, a keras.Model
                      subclass with a custom train_step, hand-written
                      Bernoulli cross-entropy summed over pixels and
                      analytic KL, jit_compile=True
```

and reports, on held-out data, the importance-sampled log-likelihood

```none
log p(x) ~ log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),  z_k ~ q(z | x),  K = 1000
```

(`VAEModel.log_likelihood`; for the plain Keras model a hand-written XLA
function below, same formula, logsumexp), and the test ELBO (analytic KL,
E_q log p(x|z) averaged over 100 samples, so its Monte Carlo error is small).
All numbers are mean nats per test example; higher is better. IWAE-trained
models are expected to have a better log p(x) and a worse ELBO (a looser
posterior is allowed by the tighter bound).

Data (stochastically binarized once with a fixed seed: pixel ~
Bernoulli(grey level), the usual setting for log-likelihoods in nats):

- `digits`: scikit-learn's bundled 8x8 digits (no download), grey levels
  scaled to [0, 1], a fixed 80/20 split (1437 train / 360 test), an MLP
  64-256-128-(z: 8) mirrored by the decoder;
- `mnist`: `keras.datasets.mnist.load_data()` (the Keras cache or a download
  with a short timeout; skipped with a note when unavailable), the
  784-512-256-(z: 32) MLP of DESIGN.md.

Default budget (2 CPU cores, no GPU): digits 100 epochs per model, ~3-5
min in all (155-200 s measured on a shared 2-core EPYC), IWAE K=50 a third of
the training time. Why 100: with only 1437 training
examples the models overfit, and the tighter the bound the sooner. Measured
with this script's model and seed (held-out log p(x), K=200, every 50
epochs):

```none
epochs          50      100     150     200     250     300     400
ELBO K=1     -23.86  -23.38  -23.20  -23.09  -23.08  -23.14  -23.28
IWAE K=50    -23.28  -23.14  -23.27  -23.41  -23.76  -24.15  -25.20
```

so at equal epochs the ranking of the objectives depends on the budget
(IWAE K=50 is ahead up to ~120 epochs, behind after); 100 epochs is near
IWAE K=50's best and still improving for ELBO K=1. Read the digits table as
"same budget", not "each at its best"; `--epochs` changes it.

MNIST, when available, gets 1 epoch per model and the first 1000 test
images: one IWAE K=50 epoch over 60000 images costs ~5 min on 2 cores (one
ELBO K=1 epoch ~15 s), so MNIST adds ~10 min and its models are far from
converged; pass `--datasets digits` to stay within ~8 min, or `--epochs`
for a longer MNIST run. The epochs used are printed in the table.

Usage (from the repository root):

```none
python benchmarks/quality.py                       # digits (+ MNIST when available)
python benchmarks/quality.py --quick               # smoke test, ~1 min
python benchmarks/quality.py --datasets digits --epochs 300 --output quality.md
```
"""

import argparse
import datetime
import math
import os
import platform
import socket
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402
from common import PlainVAE, Sampling, cpu_model, emit, mlp  # noqa: E402

# ------------------------------------------------------------ configuration
SEED = 0                       # split, binarization, shuffling, weights, noise
BATCH_SIZE = 100
LEARNING_RATE = 1e-3
EVAL_SAMPLES = 1000            # K of the test log-likelihood
ELBO_SAMPLES = 100             # samples of E_q log p(x|z) in the test ELBO
DIGITS_TEST_FRACTION = 0.2
DOWNLOAD_TIMEOUT_S = 10

CONFIGS = {
    # hidden: encoder layer sizes (the decoder mirrors them).
    "digits": {"hidden": (256, 128), "latent": 8, "epochs": 100,
               "test_examples": None},
    "mnist": {"hidden": (512, 256), "latent": 32, "epochs": 1,
              "test_examples": 1000},
}
QUICK = {"epochs": 2, "test_examples": 100, "eval_samples": 100,
         "train_examples": 2000}

# (label, objective, K) for VAEModel; None objective = the plain Keras VAE.
CONTESTANTS = (
    ("VAEModel ELBO K=1", "elbo", 1),
    ("VAEModel ELBO K=5", "elbo", 5),
    ("VAEModel IWAE K=5", "iwae", 5),
    ("VAEModel IWAE K=50", "iwae", 50),
    ("plain Keras (keras.io) ELBO K=1", None, 1),
)

# Hand-written importance sampling: examples and samples per XLA call.
IS_BATCH = 100
IS_SAMPLES_PER_CALL = ELBO_SAMPLES


# ------------------------------------------------------------------ machine
def machine_lines():
    try:
        load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "unknown"
    return [
        f"date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"cpu: {cpu_model()}, {os.cpu_count()} logical cores, no GPU used"
        if not tf.config.list_physical_devices("GPU")
        else f"cpu: {cpu_model()}, GPU: "
        f"{tf.config.list_physical_devices('GPU')}",
        f"python {platform.python_version()}, tensorflow {tf.__version__}, "
        f"keras {keras.__version__}, keras_vae {keras_vae.__version__}",
        f"load average (1/5/15 min) at the end: {load}",
    ]


# --------------------------------------------------------------------- data
def binarize(x, rng):
    """Flattens, scales to [0, 1], pixel ~ Bernoulli(grey level)."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    x = x / x.max()
    return (rng.random(x.shape) < x).astype(np.float32)


def load_digits():
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    x = sk_load_digits().data / 16.0          # grey levels 0..16
    x_train, x_test = train_test_split(
        x, test_size=DIGITS_TEST_FRACTION, random_state=SEED)
    return x_train, x_test


def load_mnist():
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)   # fail fast when offline
    try:
        (x_train, _), (x_test, _) = keras.datasets.mnist.load_data()
    finally:
        socket.setdefaulttimeout(old)
    return x_train / 255.0, x_test / 255.0


def load(name):
    """(x_train, x_test) binarized, or raises when unavailable."""
    x_train, x_test = load_digits() if name == "digits" else load_mnist()
    rng = np.random.default_rng(SEED)
    return binarize(x_train, rng), binarize(x_test, rng)


def make_dataset(x):
    return (tf.data.Dataset.from_tensor_slices(x)
            .shuffle(len(x), seed=SEED, reshuffle_each_iteration=True)
            .batch(BATCH_SIZE)
            .prefetch(tf.data.AUTOTUNE))


# ------------------------------------------------------------------- models
def build_vae_model(dim, hidden, latent, objective, k):
    keras.utils.set_random_seed(SEED)
    x_in = keras.Input((dim,))
    q = keras_vae.GaussianEncoderHead(latent_dim=latent)(mlp(x_in, hidden))
    q = keras_vae.KLRegularizer()(q)
    z = keras_vae.ReparameterizedSample(seed=SEED)(q)
    logits = keras.layers.Dense(dim)(mlp(z, hidden[::-1]))
    vae = keras_vae.VAEModel(x_in, logits)
    vae.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                loss=keras_vae.losses.BernoulliNLL(),
                objective=objective, num_samples=k)
    return vae


def build_plain_model(dim, hidden, latent):
    keras.utils.set_random_seed(SEED)
    x_in = keras.Input((dim,))
    h = mlp(x_in, hidden)
    z_mean = keras.layers.Dense(latent, name="z_mean")(h)
    z_log_var = keras.layers.Dense(latent, name="z_log_var")(h)
    z = Sampling(seed=SEED)([z_mean, z_log_var])
    encoder = keras.Model(x_in, [z_mean, z_log_var, z], name="encoder")
    z_in = keras.Input((latent,))
    decoder = keras.Model(z_in, keras.layers.Dense(dim)(mlp(z_in, hidden[::-1])),
                          name="decoder")
    model = PlainVAE(encoder, decoder)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  jit_compile=True)
    return model


# -------------------------------------------- plain model: hand-written IS
def plain_scores_fn(model):
    """XLA function: per example, logsumexp_k log w_k and sum_k log p(x|z_k)
    over `IS_SAMPLES_PER_CALL` draws, and the analytic KL."""
    log_2pi = math.log(2.0 * math.pi)

    @tf.function(jit_compile=True, reduce_retracing=True)
    def scores(x, seed):
        z_mean, z_log_var, _ = model.encoder(x, training=False)
        k, b = IS_SAMPLES_PER_CALL, tf.shape(x)[0]
        std = tf.exp(0.5 * z_log_var)
        eps = tf.random.stateless_normal(
            tf.stack([k, b, tf.shape(z_mean)[1]]), seed)
        z = z_mean + std * eps                                   # (K, B, L)
        logits = model.decoder(tf.reshape(z, [k * b, -1]), training=False)
        x_rep = tf.tile(x, [k, 1])
        log_px_z = -tf.reduce_sum(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=x_rep,
                                                    logits=logits), -1)
        log_px_z = tf.reshape(log_px_z, [k, b])
        log_pz = -0.5 * tf.reduce_sum(tf.square(z) + log_2pi, -1)
        log_qz = -0.5 * tf.reduce_sum(
            tf.square(eps) + log_2pi + z_log_var, -1)
        kl = -0.5 * tf.reduce_sum(
            1.0 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), -1)
        return (tf.reduce_logsumexp(log_px_z + log_pz - log_qz, 0),
                tf.reduce_sum(log_px_z, 0), kl)

    return scores


def plain_evaluate(model, x, num_samples):
    """Per-example importance-sampled log p(x) (K = num_samples, rounded to
    a multiple of IS_SAMPLES_PER_CALL) and ELBO (analytic KL, E_q log p(x|z)
    over the first IS_SAMPLES_PER_CALL = ELBO_SAMPLES of those draws)."""
    fn = plain_scores_fn(model)
    calls = max(1, num_samples // IS_SAMPLES_PER_CALL)
    k = calls * IS_SAMPLES_PER_CALL
    log_px, elbo = [], []
    for start in range(0, len(x), IS_BATCH):
        xb = tf.constant(x[start:start + IS_BATCH])
        lse = []
        for c in range(calls):
            a, s, kl = fn(xb, tf.constant([SEED + 1, start * calls + c]))
            lse.append(a)
            if c == 0:  # ELBO from the first IS_SAMPLES_PER_CALL draws
                elbo.append(s / IS_SAMPLES_PER_CALL - kl)
        log_px.append(tf.reduce_logsumexp(tf.stack(lse), 0) - math.log(k))
    return np.concatenate(log_px), np.concatenate(elbo), k


# ---------------------------------------------------------------- the runs
class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def run_one(label, objective, k, data, cfg, epochs, eval_samples):
    x_train, x_test = data
    dim = x_train.shape[1]
    if objective is None:
        model = build_plain_model(dim, cfg["hidden"], cfg["latent"])
    else:
        model = build_vae_model(dim, cfg["hidden"], cfg["latent"], objective,
                                k)
    timer = EpochTimer()
    start = time.perf_counter()
    history = model.fit(make_dataset(x_train), epochs=epochs, verbose=0,
                        callbacks=[timer], shuffle=False)
    train_s = time.perf_counter() - start
    final_loss = history.history["loss"][-1]
    start = time.perf_counter()
    if objective is None:
        log_px, elbo, k_eval = plain_evaluate(model, x_test, eval_samples)
    else:
        log_px = model.log_likelihood(x_test, num_samples=eval_samples)
        elbo = model.elbo(x_test, num_samples=ELBO_SAMPLES)
        k_eval = eval_samples
    eval_s = time.perf_counter() - start
    bad = int(np.sum(~np.isfinite(log_px)) + np.sum(~np.isfinite(elbo)))
    row = {
        "label": label, "epochs": epochs, "train_s": train_s,
        "first_epoch_s": timer.times[0], "eval_s": eval_s,
        "final_loss": float(final_loss), "elbo": float(np.mean(elbo)),
        "log_px": float(np.mean(log_px)),
        "log_px_se": float(np.std(log_px) / np.sqrt(len(log_px))),
        "k_eval": k_eval, "nonfinite": bad,
    }
    print(f"  {label:32s} train {train_s:6.1f} s (first epoch "
          f"{timer.times[0]:.1f} s), final train loss {final_loss:8.3f}, "
          f"test ELBO {row['elbo']:8.3f}, test log p(x) {row['log_px']:8.3f}"
          f" (eval {eval_s:.1f} s)" + (f", {bad} NON-FINITE" if bad else ""),
          flush=True)
    return row


def table(name, rows, n_train, n_test):
    ref = next(r for r in rows if r["label"] == "VAEModel ELBO K=1")
    lines = [
        f"### {name}: {n_train} train / {n_test} test examples, "
        f"{rows[0]['epochs']} epochs each, batch {BATCH_SIZE}, "
        f"Adam {LEARNING_RATE:g}, seed {SEED}",
        "",
        "| objective | epochs | train time (s) | test ELBO | "
        f"test log p(x) (K={rows[0]['k_eval']}) | log p(x) - ELBO | "
        "log p(x) vs ELBO K=1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['epochs']} | {r['train_s']:.1f} | "
            f"{r['elbo']:.2f} | {r['log_px']:.2f} ± {r['log_px_se']:.2f} | "
            f"{r['log_px'] - r['elbo']:.2f} | "
            f"{r['log_px'] - ref['log_px']:+.2f} |")
    lines += [
        "",
        "Nats per test example, mean over the test set (± its standard "
        "error over examples; the models are scored on the same examples, "
        "so differences between rows are more precise than that). Train "
        "time includes tracing and XLA compilation (the first epoch). Test "
        f"ELBO: analytic KL, E_q log p(x|z) over {ELBO_SAMPLES} samples.",
    ]
    if any(r["nonfinite"] for r in rows):
        lines.append("WARNING: some estimates were not finite.")
    return lines


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int,
                   help="epochs for every model (default: digits "
                   f"{CONFIGS['digits']['epochs']}, mnist "
                   f"{CONFIGS['mnist']['epochs']})")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK['epochs']} epochs, "
                   f"{QUICK['train_examples']} train / "
                   f"{QUICK['test_examples']} test examples, K = "
                   f"{QUICK['eval_samples']}")
    p.add_argument("--output", help="also write the report (markdown) here")
    p.add_argument("--datasets", nargs="+", choices=tuple(CONFIGS),
                   default=list(CONFIGS),
                   help="default: digits mnist (mnist skipped when it "
                   "cannot be loaded)")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs <= 0:
        p.error("--epochs must be > 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    report = ["## Quality: test log-likelihood by training objective", ""]
    total_start = time.perf_counter()
    for name in args.datasets:
        cfg = CONFIGS[name]
        try:
            x_train, x_test = load(name)
        except Exception as e:  # offline, proxy, corrupt cache, ...
            note = (f"{name}: skipped, could not be loaded "
                    f"({type(e).__name__}: {str(e)[:100]})")
            print(note, flush=True)
            report += [f"_{note}_", ""]
            continue
        epochs = args.epochs or cfg["epochs"]
        n_test = cfg["test_examples"]
        eval_samples = EVAL_SAMPLES
        if args.quick:
            epochs = args.epochs or QUICK["epochs"]
            x_train = x_train[:QUICK["train_examples"]]
            n_test = QUICK["test_examples"]
            eval_samples = QUICK["eval_samples"]
        x_test = x_test[:n_test]
        arch = "-".join(map(str, (x_train.shape[1],) + cfg["hidden"]))
        print(f"{name}: {len(x_train)} train / {len(x_test)} test, MLP "
              f"{arch}-(z {cfg['latent']}) mirrored, {epochs} epochs, "
              f"batch {BATCH_SIZE}", flush=True)
        rows = [run_one(label, objective, k, (x_train, x_test), cfg, epochs,
                        eval_samples)
                for label, objective, k in CONTESTANTS]
        report += table(f"{name} (MLP {arch}-(z {cfg['latent']}), "
                        "Bernoulli likelihood)", rows, len(x_train),
                        len(x_test))
        report.append("")
    report += [f"total wall time: {time.perf_counter() - total_start:.0f} s"]
    report += machine_lines()
    emit(report, args.output)


if __name__ == "__main__":
    main()
