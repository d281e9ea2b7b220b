"""Model quality: test log-likelihood and ELBO by training objective.

One MLP VAE, trained from the same initial weights, on the same data, for
the same epochs, batch size and seed, by each of:

```none
VAEModel  ELBO K=1    loss = -log p(x|z) + KL(q || p)                      (1 sample)
VAEModel  ELBO K=5    loss = -(1/5) sum_k log p(x|z_k) + KL                 (5 samples)
VAEModel  IWAE K=5    loss = -log (1/5)  sum_k p(x|z_k) p(z_k) / q(z_k|x)   (Burda et al. 2015)
VAEModel  IWAE K=50   loss = -log (1/50) sum_k ...
plain Keras ELBO K=1  the keras.io VAE (baselines.PlainVAE), jit_compile=True
```

and reports, on held-out data, the importance-sampled log-likelihood

```none
log p(x) ~ log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),  z_k ~ q(z | x),  K = 1000
```

(`VAEModel.log_likelihood`; for the plain model the hand-written estimator
`baselines.importance_sampled`, same formula) and the test ELBO (analytic
KL, E_q log p(x|z) over 100 samples). Nats per test example; higher is
better. IWAE-trained models are expected to have a better log p(x) and a
worse ELBO.

Data: `digits` (harness.digits: scikit-learn's 8x8 digits, binarized with
seed 0, 1437 train / 360 test; MLP 64-256-128-(z 8) mirrored) and, when it
can be loaded, `mnist` (`keras.datasets.mnist`, 1 epoch, 1000 test images,
the 784-512-256-(z 32) MLP; ~10 more minutes, far from converged).

Budget: digits 100 epochs per model, ~3-5 min in all on 2 CPU cores. With
1437 training examples the models overfit, the tighter the bound the
sooner (held-out log p(x), K=200, this model and seed):

```none
epochs          50      100     150     200     250     300     400
ELBO K=1     -23.86  -23.38  -23.20  -23.09  -23.08  -23.14  -23.28
IWAE K=50    -23.28  -23.14  -23.27  -23.41  -23.76  -24.15  -25.20
```

so read the table as "same budget", not "each at its best".

    python benchmarks/quality.py                       # digits (+ MNIST when available)
    python benchmarks/quality.py --quick               # smoke test
    python benchmarks/quality.py --datasets digits --epochs 300 --output quality.md
"""

import socket
import sys
import time

import harness  # first: it sets TF's log level before TF is imported
import keras
import numpy as np

import baselines

SEED = 0                       # split, binarization, shuffling, weights, noise
BATCH_SIZE = 100
EVAL_SAMPLES = 1000            # K of the test log-likelihood
ELBO_SAMPLES = 100             # samples of E_q log p(x|z) in the test ELBO
IS_ROWS = 100                  # hand-written estimator: examples per call
DOWNLOAD_TIMEOUT_S = 10
CONFIGS = {   # hidden: encoder layer sizes (the decoder mirrors them)
    "digits": {"hidden": (256, 128), "latent": 8, "epochs": 100,
               "test_examples": None},
    "mnist": {"hidden": (512, 256), "latent": 32, "epochs": 1,
              "test_examples": 1000},
}
QUICK = {"epochs": 1, "train_examples": 500, "test_examples": 50,
         "eval_samples": 20, "elbo_samples": 5}
REFERENCE = "VAEModel ELBO K=1"
PLAIN = "plain Keras (keras.io) ELBO K=1"
CONTESTANTS = {   # label: (objective, K); None = the plain Keras VAE
    REFERENCE: ("elbo", 1), "VAEModel ELBO K=5": ("elbo", 5),
    "VAEModel IWAE K=5": ("iwae", 5), "VAEModel IWAE K=50": ("iwae", 50),
    PLAIN: (None, 1),
}
# The VAEModel contestants differ only in compile's arguments: one of them.
QUICK_CONTESTANTS = (REFERENCE, PLAIN)


def load(name):
    """(x_train, x_test), binarized (digits: `harness.digits`)."""
    if name == "digits":
        return harness.digits(SEED, split_seed=SEED)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)   # fail fast when offline
    try:
        (x_train, _), (x_test, _) = keras.datasets.mnist.load_data()
    finally:
        socket.setdefaulttimeout(old)
    rng = np.random.default_rng(SEED)
    return tuple((rng.random(a.shape) < a / 255.0).astype("float32")
                 .reshape(len(a), -1) for a in (x_train, x_test))


def make_dataset(x, seed=SEED):
    return harness.dataset(x, BATCH_SIZE, shuffle_seed=seed)


def plain_evaluate(model, x, num_samples, elbo_samples=ELBO_SAMPLES,
                   seed=SEED):
    """Hand-written (log p(x), ELBO, K) of the keras.io model: K draws
    (rounded to a multiple of `elbo_samples`), the ELBO from the first
    `elbo_samples` of them."""
    k = min(elbo_samples, num_samples)
    fn = baselines.bernoulli_is_fn(baselines.hand_written_encode(model),
                                   model.decoder, k,
                                   model.decoder.inputs[0].shape[-1])
    return baselines.importance_sampled(fn, k, x, num_samples, seed, IS_ROWS)


def run_one(label, data, cfg, epochs, eval_samples, elbo_samples,
            quick=False):
    x_train, x_test = data
    dim = x_train.shape[1]
    objective, k = CONTESTANTS[label]
    keras.utils.set_random_seed(SEED)
    if objective is None:
        model = baselines.hand_written(dim, cfg["hidden"], cfg["latent"], SEED,
                                       **harness.compile_kwargs(quick))
    else:
        model = baselines.compile_vae(
            baselines.mlp_vae(dim, cfg["hidden"], cfg["latent"], SEED),
            objective=objective, num_samples=k,
            **harness.compile_kwargs(quick))
    timer = harness.EpochTimer()
    history, train_s = harness.timed(lambda: model.fit(
        make_dataset(x_train), epochs=epochs, verbose=0, callbacks=[timer],
        shuffle=False))
    start = time.perf_counter()
    if objective is None:
        log_px, elbo, k_eval = plain_evaluate(model, x_test, eval_samples,
                                              elbo_samples)
    else:
        log_px = model.log_likelihood(x_test, num_samples=eval_samples)
        elbo = model.elbo(x_test, num_samples=elbo_samples)
        k_eval = eval_samples
    eval_s = time.perf_counter() - start
    row = {"label": label, "epochs": epochs, "train_s": train_s,
           "elbo": float(np.mean(elbo)), "log_px": float(np.mean(log_px)),
           "log_px_se": float(np.std(log_px) / np.sqrt(len(log_px))),
           "k_eval": k_eval,
           "nonfinite": int(np.sum(~np.isfinite(log_px))
                            + np.sum(~np.isfinite(elbo)))}
    print(f"  {label:32s} train {train_s:6.1f} s (first epoch "
          f"{timer.times[0]:.1f} s), final train loss "
          f"{history.history['loss'][-1]:8.3f}, test ELBO {row['elbo']:8.3f}, "
          f"log p(x) {row['log_px']:8.3f} (eval {eval_s:.1f} s)"
          + (f", {row['nonfinite']} NON-FINITE" if row["nonfinite"] else ""),
          flush=True)
    return row


def table(name, rows, n_train, n_test, elbo_samples):
    ref = next((r for r in rows if r["label"] == REFERENCE), None)
    lines = [
        f"### {name}: {n_train} train / {n_test} test examples, "
        f"{rows[0]['epochs']} epochs each, batch {BATCH_SIZE}, Adam "
        f"{baselines.LEARNING_RATE:g}, seed {SEED}", "",
        *harness.table(
            ["objective", "epochs", "train time (s)", "test ELBO",
             f"test log p(x) (K={rows[0]['k_eval']})", "log p(x) - ELBO",
             f"log p(x) vs {REFERENCE}"],
            [[r["label"], r["epochs"], f"{r['train_s']:.1f}",
              f"{r['elbo']:.2f}",
              f"{r['log_px']:.2f} ± {r['log_px_se']:.2f}",
              f"{r['log_px'] - r['elbo']:.2f}",
              f"{r['log_px'] - ref['log_px']:+.2f}" if ref else "—"]
             for r in rows]),
        "",
        "Nats per test example, mean over the test set (± its standard error "
        "over examples; the models are scored on the same examples, so "
        "differences between rows are more precise than that). Train time "
        "includes tracing and XLA compilation (the first epoch). Test ELBO: "
        f"analytic KL, E_q log p(x|z) over {elbo_samples} samples.",
    ]
    if any(r["nonfinite"] for r in rows):
        lines.append("WARNING: some estimates were not finite.")
    return lines


def main(argv=None):
    p = harness.parser(
        __doc__, f"smoke test: {QUICK['epochs']} epoch, "
        f"{QUICK['train_examples']} train / {QUICK['test_examples']} test "
        f"examples, K = {QUICK['eval_samples']}, contestants "
        f"{', '.join(QUICK_CONTESTANTS)}, eager train steps")
    p.add_argument("--epochs", type=int, help="epochs for every model "
                   "(default: digits 100, mnist 1)")
    p.add_argument("--datasets", nargs="+", choices=tuple(CONFIGS),
                   help="default: digits mnist (mnist skipped when it "
                   "cannot be loaded; --quick: digits)")
    args = p.parse_args(argv)
    harness.positive(p, args, "epochs")
    report = harness.Report("Quality: test log-likelihood by training "
                            "objective")
    labels = QUICK_CONTESTANTS if args.quick else tuple(CONTESTANTS)
    for name in args.datasets or (["digits"] if args.quick else CONFIGS):
        cfg = CONFIGS[name]
        try:
            x_train, x_test = load(name)
        except Exception as e:  # offline, proxy, corrupt cache, ...
            note = (f"{name}: skipped, could not be loaded "
                    f"({type(e).__name__}: {str(e)[:100]})")
            print(note, flush=True)
            report.add(f"_{note}_", "")
            continue
        epochs = args.epochs or cfg["epochs"]
        n_test, k, k_elbo = cfg["test_examples"], EVAL_SAMPLES, ELBO_SAMPLES
        if args.quick:
            epochs = args.epochs or QUICK["epochs"]
            x_train = harness.whole_batches(x_train[:QUICK["train_examples"]],
                                            BATCH_SIZE)
            n_test, k = QUICK["test_examples"], QUICK["eval_samples"]
            k_elbo = QUICK["elbo_samples"]
        x_test = x_test[:n_test]
        arch = "-".join(map(str, (x_train.shape[1],) + cfg["hidden"]))
        print(f"{name}: {len(x_train)} train / {len(x_test)} test, MLP "
              f"{arch}-(z {cfg['latent']}), {epochs} epochs", flush=True)
        rows = [run_one(label, (x_train, x_test), cfg, epochs, k, k_elbo,
                        args.quick) for label in labels]
        report.add(*table(f"{name} (MLP {arch}-(z {cfg['latent']}), "
                          "Bernoulli likelihood)", rows, len(x_train),
                          len(x_test), k_elbo), "")
    report.emit(args.output)


if __name__ == "__main__":
    sys.exit(main())
