"""Disentanglement at equal budget: VAE, β-VAE, β-TCVAE and FactorVAE.

Four VAEs on the procedural shapes (`keras_vae.datasets.load_shapes`,
dSprites' grid at 32 x 32: shape, scale, orientation, x, y), the same
network and budget each (MLP 1024-512-256-(z 10) mirrored, Bernoulli
likelihood, batch 128, Adam 1e-3, XLA):

```none
VAE         the ELBO
β-VAE       KLRegularizer(weight=4.0): β = 4 on the KL (Higgins et al. 2017)
β-TCVAE     objectives.BetaTCVAE(beta=6.0, dataset_size=N): β = 6 on the
            total correlation, MSS (Chen et al. 2018)
FactorVAE   objectives.FactorVAE(gamma=10.0): γ = 10 on the discriminator's
            TC, D of 3 x 256 units, Adam 1e-4 (0.5, 0.9) (Kim & Mnih 2018)
```

Per model, on held-out images: MIG (20 bins), DCI disentanglement
(gradient-boosted trees, as disentanglement_lib), SAP, the test ELBO (K =
10 draws), the total correlation of q(z) (`kl_decomposition`, MSS over the
test images) and the training time; a latent traversal of the model with
the best MIG is written to `--picture`. The codes are the posterior means.
One seed: Locatello et al. (2019) found the seed moves these scores as
much as the objective does, so read the table as a working example, not
a ranking.

    python benchmarks/disentanglement.py          # 18 min on 2 cores others kept 80% busy
    python benchmarks/disentanglement.py --quick  # smoke test
"""

import os
import time

import harness  # first: it sets TF's log level before TF is imported
import keras
import keras_vae
import numpy as np
import tensorflow as tf
from harness import timed
from keras_vae import disentanglement, objectives

IMAGE, LATENT, HIDDEN = 32, 10, (512, 256)
BATCH, LEARNING_RATE, ELBO_SAMPLES = 128, 1e-3, 10
DEFAULTS = {"epochs": 8, "train_examples": 30000, "test_examples": 5000,
            "metric_examples": 5000, "dci_examples": 1000,
            "tc_examples": 2000, "dci_model": "gbt"}
QUICK = {"epochs": 1, "train_examples": 1024, "test_examples": 300,
         "metric_examples": 300, "dci_examples": 300, "tc_examples": 300,
         "dci_model": "logistic"}
DCI_MODELS = {"gbt": "gradient-boosted trees, 100 stages, as disentanglement_lib",
              "logistic": "logistic regression: quick, not comparable"}
PICTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "results_disentanglement_traversal.png")


def models(n_train):
    """label -> (KLRegularizer weight, objective)."""
    return {
        "VAE": (1.0, "elbo"),
        "β-VAE (β=4)": (4.0, "elbo"),
        "β-TCVAE (β=6, MSS)": (1.0, objectives.BetaTCVAE(
            beta=6.0, dataset_size=n_train, sampling="mss")),
        "FactorVAE (γ=10)": (1.0, objectives.FactorVAE(gamma=10.0, seed=0)),
    }


def build(kl_weight, seed):
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((IMAGE, IMAGE, 1))
    h = keras.layers.Flatten()(x_in)
    for units in HIDDEN:
        h = keras.layers.Dense(units, activation="relu")(h)
    q = keras_vae.KLRegularizer(weight=kl_weight)(
        keras_vae.GaussianEncoderHead(LATENT)(h))
    h = keras_vae.ReparameterizedSample(seed=seed)(q)
    for units in HIDDEN[::-1]:
        h = keras.layers.Dense(units, activation="relu")(h)
    logits = keras.layers.Reshape((IMAGE, IMAGE, 1))(
        keras.layers.Dense(IMAGE * IMAGE)(h))
    return keras_vae.VAEModel(x_in, logits)


def run_one(label, spec, data, epochs, seed, sizes, jit):
    (x_train, _), (x_test, f_test) = data
    kl_weight, objective = spec
    vae = build(kl_weight, seed)
    vae.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                loss=keras_vae.losses.BernoulliNLL(), objective=objective,
                jit_compile=jit)
    train = harness.dataset(x_train, BATCH, shuffle_seed=seed,
                            drop_remainder=True)  # one batch shape
    history, train_s = timed(lambda: vae.fit(train, epochs=epochs,
                                             verbose=0, shuffle=False).history)
    start = time.perf_counter()
    m, d = sizes["metric_examples"], sizes["dci_examples"]
    codes = vae.posterior_mode(x_test[:m])
    row = {
        "label": label, "train_s": train_s, "jit": vae.jit_compile,
        "steps": int(vae.optimizer.iterations.numpy()),
        "mig": disentanglement.mig(codes, f_test[:m]),
        "dci": disentanglement.dci(codes[:d], f_test[:d], seed=seed,
                                   model=sizes["dci_model"])[
            "disentanglement"],
        "sap": disentanglement.sap(codes, f_test[:m], seed=seed),
        "elbo": float(np.mean(vae.elbo(x_test, num_samples=ELBO_SAMPLES,
                                       seed=seed))),
        "tc": disentanglement.kl_decomposition(
            vae, x_test[:sizes["tc_examples"]], seed=seed)[
            "total_correlation"],
        "history": {k: v[-1] for k, v in history.items()},
        "vae": vae,
    }
    print(f"  {label:22s} train {train_s:.0f} s ({row['steps']} steps), "
          f"eval {time.perf_counter() - start:.0f} s: MIG {row['mig']:.3f}, "
          f"DCI {row['dci']:.3f}, SAP {row['sap']:.3f}, ELBO "
          f"{row['elbo']:.2f}, TC {row['tc']:.2f}", flush=True)
    return row


def table(rows, n_train, n_test, sizes, epochs, seed):
    first = rows[0]
    no_xla = [r["label"] for r in rows if not r["jit"]]
    return [
        f"### shapes {IMAGE}x{IMAGE} (dSprites' grid, procedural): "
        f"{n_train:,} train / {n_test:,} test images, {epochs} epochs "
        f"({first['steps']:,} steps) each, batch {BATCH}, Adam "
        f"{LEARNING_RATE:g}, MLP 1024-{'-'.join(map(str, HIDDEN))}-(z "
        f"{LATENT}), seed {seed}, "
        + (f"WARNING: no XLA for {no_xla}" if no_xla else "XLA"), "",
        *harness.table(
            ["model", "MIG", "DCI disentanglement", "SAP",
             f"test ELBO (K={ELBO_SAMPLES})",
             f"TC, {sizes['tc_examples']:,} test images (nats)",
             "train time (s)"],
            [[r["label"], f"{r['mig']:.3f}", f"{r['dci']:.3f}",
              f"{r['sap']:.3f}", f"{r['elbo']:.2f}", f"{r['tc']:.2f}",
              f"{r['train_s']:.0f}"] for r in rows]),
        "",
        f"MIG and SAP on {sizes['metric_examples']:,} test images, DCI "
        f"({DCI_MODELS[sizes['dci_model']]}) on {sizes['dci_examples']:,} "
        "(2/3 to fit, 1/3 to score); codes are posterior means. TC: "
        f"`kl_decomposition` over {sizes['tc_examples']:,} test images "
        "(one draw each, MSS, the images as the dataset): with posteriors "
        "this sharp their aggregate is a mixture of narrow bumps (its "
        f"index-code MI near the ceiling log {sizes['tc_examples']:,} = "
        f"{np.log(sizes['tc_examples']):.1f} nats), so the column compares "
        "models only roughly.", "", *own_estimates(rows)]


def own_estimates(rows):
    """The objectives' own estimates at the last epoch of training."""
    lines = []
    for r in rows:
        h = r["history"]
        if "discriminator_accuracy" in h:
            lines.append(
                f"- {r['label']}, its discriminator at the last epoch: TC "
                f"(mean logit) {h['total_correlation']:.2f} nats, accuracy "
                f"{h['discriminator_accuracy']:.2f} (0.5 is chance)")
        elif "total_correlation" in h:
            lines.append(
                f"- {r['label']}, its minibatch estimate at the last epoch: "
                f"MI {h['mutual_information']:.2f}, TC "
                f"{h['total_correlation']:.2f}, dimension-wise KL "
                f"{h['dimension_wise_kl']:.2f} nats")
    return lines


def traversal(row, x, path):
    grid = keras_vae.plotting.latent_traversal(
        row["vae"], x[:1], values=np.linspace(-2.5, 2.5, 9))
    keras_vae.plotting.save_grid(
        grid[None, :, :, None], path, ncols=1,
        title=f"{row['label']}: one latent dimension per row (MIG "
              f"{row['mig']:.2f})")
    return path


def main(argv=None):
    p = harness.parser(__doc__, f"smoke test: sizes {QUICK}, no XLA, "
                       "no picture")
    p.add_argument("--epochs", type=int)
    p.add_argument("--train-examples", type=int)
    p.add_argument("--test-examples", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--picture", help=f"traversal PNG (default {PICTURE}; "
                   "with --quick none unless given)")
    args = p.parse_args(argv)
    harness.positive(p, args, "epochs", "train_examples", "test_examples")
    sizes = dict(QUICK if args.quick else DEFAULTS)
    epochs = args.epochs or sizes["epochs"]
    n_train = args.train_examples or sizes["train_examples"]
    n_test = args.test_examples or sizes["test_examples"]
    for key in ("metric_examples", "dci_examples", "tc_examples"):
        sizes[key] = min(sizes[key], n_test)
    n_train = max(BATCH, n_train // BATCH * BATCH)
    report = harness.Report("Disentanglement at equal budget")
    tf.random.set_seed(args.seed)
    data = (keras_vae.datasets.load_shapes(n_train, IMAGE, seed=1000),
            keras_vae.datasets.load_shapes(n_test, IMAGE, seed=2000))
    rows = [run_one(label, spec, data, epochs, args.seed, sizes,
                    jit=not args.quick)
            for label, spec in models(n_train).items()]
    report.add(*table(rows, n_train, n_test, sizes, epochs, args.seed))
    picture = args.picture or (None if args.quick else PICTURE)
    if picture:
        best = max(rows, key=lambda r: r["mig"])
        traversal(best, data[1][0], picture)
        report.add("", f"Traversal of the best MIG ({best['label']}): "
                   f"`{os.path.basename(picture)}`")
    report.emit(args.output)
    return rows


if __name__ == "__main__":
    main()
