"""Model family: priors, a flow posterior and a two-level VAE at one budget.

Five VAEs on the data of `quality.py` (scikit-learn's 8x8 digits,
stochastically binarized with its seed, its 1437 train / 360 test split),
trained by the ELBO (K = 1) with the same epochs, batch size, optimizer,
learning rate, seeds and the same MLP encoder and decoder
(64-256-128-(z 8), mirrored), under XLA (`VAEModel.compile`'s default,
checked and printed):

```none
standard normal  p(z) = N(0, I),  q(z|x) a diagonal Gaussian (as in all
                 others but the IAF model)
mixture prior    p(z) = sum_c pi_c N(m_c, diag s_c^2), C = 10, all learned
VampPrior        p(z) = (1/U) sum_u q(z | u_u), U = 100 learned
                 pseudo-inputs started from training examples
                 (Tomczak & Welling 2017)
IAF posterior    q(z|x): the diagonal Gaussian pushed through 2 IAF steps
                 (MADE 64 hidden units, encoder features as context;
                 Kingma et al. 2016)
hierarchical     p(z2) p(z1|z2) p(x|z1),  q(z2|x) q(z1|x,z2)  (top-down
                 inference), z1: 8 (the others' latent), z2: 4, p(z1|z2)
                 through a Dense(64)
```

Per model, on the test set: the importance-sampled log-likelihood

```none
log p(x) ~ log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x),  K = 1000
```

(`VAEModel.log_likelihood`; for the hierarchical model z_k = (z1, z2)_k and
p, q are the products over levels), the ELBO with E_q over 100 samples
(`VAEModel.elbo`), the KL term (the `kl` metric of `VAEModel.evaluate`,
averaged over 10 passes over the test set, since the mixture priors and the
flow have no closed-form KL and it is a one-sample estimate per pass; for
the hierarchical model also per level), active units (Burda et al. 2015:
Cov_x E_q[z_d] > 0.01, with E_q[z] taken as the posterior mode the model
reconstructs from: loc, the flow of loc for IAF, loc of z1 given the mode of
z2), trainable parameters (the VampPrior's pseudo-inputs and the mixture's
parameters included) and training wall time (the first epoch includes
tracing and XLA compilation). Nats per test example; higher is better.

Same steps for every model (epochs x 15 steps), so the line after the
table answers the question of the IAF issue: on this small data set, is
the flow's test ELBO at least as good as the diagonal posterior's?

The budget is `quality.py`'s (100 epochs, batch 100, Adam 1e-3; the
standard-normal model here is its "VAEModel ELBO K=1"), at which, as
measured there, that model's held-out log p(x) is still improving (best
near 200-250 epochs) and tighter objectives are already near theirs;
richer models can overfit 1437 examples sooner, so read the table as "same
budget", not "each at its best" (`--epochs` changes it). Each model is
trained with seeds 0, 1, 2 (`--seeds`) and the table shows mean ± sd over
them (data and split stay fixed; weights, noise and shuffling change);
differences to the standard-normal model are paired per seed.

Usage (from the repository root, or anywhere):

```none
python benchmarks/model_family.py          # 3 seeds, ~10 min on 2 CPU cores
python benchmarks/model_family.py --quick  # smoke test, 1 seed, ~1.5 min
python benchmarks/model_family.py --seeds 0 --epochs 300 --output family.md
```
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_vae  # noqa: E402
from common import emit, mlp  # noqa: E402
from quality import (  # noqa: E402
    BATCH_SIZE,
    CONFIGS,
    ELBO_SAMPLES,
    EVAL_SAMPLES,
    LEARNING_RATE,
    QUICK,
    SEED,
    EpochTimer,
    load,
    machine_lines,
    make_dataset,
)

# ------------------------------------------------------------ configuration
CFG = CONFIGS["digits"]        # hidden (256, 128), latent 8, 100 epochs
MIXTURE_COMPONENTS = 10
PSEUDO_INPUTS = 100
# Pseudo-inputs through a sigmoid, started at training images kept 0.1
# inside (0, 1) (pixel 0 -> 0.1, 1 -> 0.9): at exactly 0 or 1 the sigmoid
# has a vanishing gradient, so the pseudo-inputs would not learn.
PSEUDO_INPUT_ACTIVATION = "sigmoid"
PSEUDO_INPUT_MARGIN = 0.1
IAF_FLOWS = 2
IAF_HIDDEN = (64,)
TOP_LATENT = 4                 # z2 of the hierarchical model (z1 = CFG latent)
TOP_HIDDEN = 64                # Dense of p(z1 | z2)
SEEDS = (SEED, SEED + 1, SEED + 2)  # default --seeds (one with --quick)
KL_PASSES = 10                 # passes over the test set for the KL metric
ACTIVE_THRESHOLD = 0.01        # Burda et al. 2015
REFERENCE = "standard normal"  # the diagonal-posterior, N(0, I) model
FLOW = "IAF posterior"


# ------------------------------------------------------------------- models
def head(h, latent, prior=None, name=None):
    """(loc, scale) of a diagonal Gaussian, through a KLRegularizer."""
    q = keras_vae.GaussianEncoderHead(latent)(h)
    return keras_vae.KLRegularizer(prior=prior, name=name)(q)


def decoder(z, dim):
    return keras.layers.Dense(dim)(mlp(z, CFG["hidden"][::-1]))


def build_standard(x_in, dim, seed):
    z = keras_vae.ReparameterizedSample(seed=seed)(
        head(mlp(x_in, CFG["hidden"]), CFG["latent"]))
    return decoder(z, dim)


def build_mixture(x_in, dim, seed):
    prior = keras_vae.priors.MixtureOfGaussians(MIXTURE_COMPONENTS,
                                                seed=seed)
    z = keras_vae.ReparameterizedSample(seed=seed)(
        head(mlp(x_in, CFG["hidden"]), CFG["latent"], prior))
    return decoder(z, dim)


def build_vamp(x_in, dim, seed):
    prior = keras_vae.priors.VampPrior(
        PSEUDO_INPUTS, pseudo_input_activation=PSEUDO_INPUT_ACTIVATION,
        seed=seed)
    z = keras_vae.ReparameterizedSample(seed=seed)(
        head(mlp(x_in, CFG["hidden"]), CFG["latent"], prior))
    return decoder(z, dim)


def build_iaf(x_in, dim, seed):
    h = mlp(x_in, CFG["hidden"])
    loc, scale = head(h, CFG["latent"])
    z = keras_vae.IAFSample(IAF_FLOWS, IAF_HIDDEN, seed=seed)([loc, scale, h])
    return decoder(z, dim)


def build_hierarchical(x_in, dim, seed):
    h = mlp(x_in, CFG["hidden"])
    z2 = keras_vae.ReparameterizedSample(seed=seed, name="z2")(
        head(h, TOP_LATENT, name="kl_z2"))
    p1 = keras_vae.GaussianEncoderHead(CFG["latent"], name="p_z1")(
        keras.layers.Dense(TOP_HIDDEN, activation="relu")(z2))
    q1 = keras_vae.GaussianEncoderHead(CFG["latent"], name="q_z1")(
        keras.layers.Concatenate()([h, z2]))
    q1 = keras_vae.KLRegularizer(name="kl_z1")([q1, p1])
    # Its own noise stream: with z2's seed, z1's first 4 coordinates would
    # get z2's eps.
    z1 = keras_vae.ReparameterizedSample(seed=seed + 1, name="z1")(q1)
    return decoder(z1, dim)


MODELS = (  # (label, builder, latent description)
    (REFERENCE, build_standard, f"z {CFG['latent']}"),
    (f"mixture prior ({MIXTURE_COMPONENTS} comp.)", build_mixture,
     f"z {CFG['latent']}"),
    (f"VampPrior ({PSEUDO_INPUTS} pseudo-inputs)", build_vamp,
     f"z {CFG['latent']}"),
    (FLOW, build_iaf, f"z {CFG['latent']}, {IAF_FLOWS} flows"),
    ("hierarchical", build_hierarchical,
     f"z1 {CFG['latent']}, z2 {TOP_LATENT}"),
)


def build(builder, x_train, seed):
    keras.utils.set_random_seed(seed)
    dim = x_train.shape[1]
    x_in = keras.Input((dim,))
    vae = keras_vae.VAEModel(x_in, builder(x_in, dim, seed))
    for level in vae.levels:  # VampPrior: start from training examples
        prior = level.kl.prior
        if isinstance(prior, keras_vae.priors.VampPrior):
            rows = np.random.default_rng(seed).choice(
                len(x_train), PSEUDO_INPUTS, replace=False)
            prior.set_pseudo_inputs(x_train[rows], margin=PSEUDO_INPUT_MARGIN)
    vae.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                loss=keras_vae.losses.BernoulliNLL())  # jit_compile default
    return vae


# -------------------------------------------------------------- diagnostics
def active_units(vae, x):
    """Per level, the dimensions d with Var_x(mode_d) > ACTIVE_THRESHOLD
    (`keras_vae.evaluate.active_units` at each level's posterior mode)."""
    return [
        keras_vae.evaluate.active_units(
            vae, x, threshold=ACTIVE_THRESHOLD,
            level=None if len(vae.levels) == 1 else level.name)[0]
        for level in vae.levels
    ]


def trainable_params(vae):
    return int(sum(np.prod(w.shape) for w in vae.trainable_weights))


# ---------------------------------------------------------------- the runs
def run_one(label, builder, data, epochs, eval_samples, seed):
    x_train, x_test = data
    vae = build(builder, x_train, seed)
    timer = EpochTimer()
    start = time.perf_counter()
    history = vae.fit(make_dataset(x_train), epochs=epochs, verbose=0,
                      callbacks=[timer], shuffle=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    log_px = vae.log_likelihood(x_test, num_samples=eval_samples)
    elbo = vae.elbo(x_test, num_samples=ELBO_SAMPLES)
    metrics = vae.evaluate(np.tile(x_test, (KL_PASSES, 1)),
                           batch_size=BATCH_SIZE, verbose=0, return_dict=True)
    eval_s = time.perf_counter() - start
    bad = int(np.sum(~np.isfinite(log_px)) + np.sum(~np.isfinite(elbo)))
    row = {
        "label": label, "seed": seed, "epochs": epochs,
        "k_eval": eval_samples,
        "steps": int(vae.optimizer.iterations.numpy()),
        "jit_compile": vae.jit_compile, "params": trainable_params(vae),
        "train_s": train_s, "first_epoch_s": timer.times[0],
        "eval_s": eval_s, "final_loss": float(history.history["loss"][-1]),
        "log_px": float(np.mean(log_px)),
        "log_px_se": float(np.std(log_px) / np.sqrt(len(log_px))),
        "elbo": float(np.mean(elbo)), "elbo_per_example": elbo,
        "kl": float(metrics["kl"]),
        "kl_levels": [float(metrics[f"kl_{level.name}"])
                      for level in vae.levels] if len(vae.levels) > 1 else [],
        "level_names": [level.name for level in vae.levels],
        "active": active_units(vae, x_test), "nonfinite": bad,
    }
    print(f"  seed {seed} {label:34s} jit_compile={row['jit_compile']} "
          f"train {train_s:6.1f} s (first epoch {timer.times[0]:.1f} s), "
          f"loss {row['final_loss']:7.3f}, test log p(x) "
          f"{row['log_px']:7.3f}, ELBO {row['elbo']:7.3f}, KL "
          f"{row['kl']:6.3f}, active {'+'.join(map(str, row['active']))} "
          f"(eval {eval_s:.1f} s)" + (f", {bad} NON-FINITE" if bad else ""),
          flush=True)
    return row


# ------------------------------------------------------------------ report
def mean_sd(values, digits=2):
    values = np.asarray(values, np.float64)
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def count_cell(values):
    """Counts over seeds: the count when they agree, else mean ± sd."""
    return str(values[0]) if len(set(values)) == 1 else mean_sd(values, 1)


def table(runs, latents, n_train, n_test, seeds):
    """`runs`: label -> list of rows (one per seed)."""
    first = next(iter(runs.values()))[0]
    several = len(seeds) > 1
    ref = runs[REFERENCE]
    all_rows = [r for rows in runs.values() for r in rows]
    no_xla = sorted({r["label"] for r in all_rows if not r["jit_compile"]})
    xla = ("XLA (jit_compile=True, read back from each model)"
           if not no_xla else f"WARNING: jit_compile=False for {no_xla}")
    lines = [
        f"### digits (MLP 64-{'-'.join(map(str, CFG['hidden']))}-(z), "
        f"Bernoulli likelihood): {n_train} train / {n_test} test examples, "
        f"{first['epochs']} epochs ({first['steps']} steps) each, batch "
        f"{BATCH_SIZE}, Adam {LEARNING_RATE:g}, ELBO K=1, "
        f"seed{'s' if several else ''} {', '.join(map(str, seeds))}, "
        + xla,
        "",
        "| model | latent | params | train time (s) | "
        f"test log p(x) (K={first['k_eval']}) | test ELBO (K={ELBO_SAMPLES})"
        " | log p(x) - ELBO | KL | active units | log p(x) vs "
        f"{REFERENCE} |",
        "| --- | --- |" + " ---: |" * 8,
    ]
    for label, rows in runs.items():
        log_px = [r["log_px"] for r in rows]
        if several:
            log_px_cell = mean_sd(log_px)
        else:
            log_px_cell = f"{log_px[0]:.2f} ± {rows[0]['log_px_se']:.2f}"
        kl = mean_sd([r["kl"] for r in rows])
        if rows[0]["kl_levels"]:
            per_level = np.mean([r["kl_levels"] for r in rows], 0)
            kl += " (" + ", ".join(
                f"{n} {v:.2f}" for n, v in zip(rows[0]["level_names"],
                                              per_level)) + ")"
        active = " + ".join(
            (f"{name} " if len(rows[0]["active"]) > 1 else "")
            + count_cell([r["active"][i] for r in rows])
            for i, name in enumerate(rows[0]["level_names"]))
        diff = [r["log_px"] - q["log_px"] for r, q in zip(rows, ref)]
        lines.append(
            f"| {label} | {latents[label]} | {rows[0]['params']:,} | "
            f"{mean_sd([r['train_s'] for r in rows], 1)} | {log_px_cell} | "
            f"{mean_sd([r['elbo'] for r in rows])} | "
            f"{mean_sd([r['log_px'] - r['elbo'] for r in rows])} | {kl} | "
            f"{active} | "
            + ("—" if label == REFERENCE else
               f"{np.mean(diff):+.2f}"
               + (f" ± {np.std(diff, ddof=1):.2f}" if several else ""))
            + " |")
    lines += [
        "",
        "Nats per test example, mean over the test set"
        + (f", then mean ± sd over {len(seeds)} seeds (the last column: "
           "the paired difference per seed)" if several else
           " (± its standard error over examples; the models are scored on "
           "the same examples, so differences between rows are more precise "
           "than that)")
        + ". Params: trainable weights (pseudo-inputs and mixture "
        "parameters included). Train time includes tracing and XLA "
        "compilation (the first epoch). KL: the `kl` metric of "
        f"`evaluate` over {KL_PASSES} passes of the test set (sampled "
        "for the mixture priors and the flow). Active units: "
        f"Cov_x E_q[z_d] > {ACTIVE_THRESHOLD} (per level, z1 + z2).",
    ]
    if any(r["nonfinite"] for r in all_rows):
        lines.append("WARNING: some estimates were not finite.")
    return lines


def flow_comparison(runs):
    """The IAF issue's question, answered from the test ELBOs."""
    flow, diag = runs[FLOW], runs[REFERENCE]
    diffs = np.array([f["elbo"] - d["elbo"] for f, d in zip(flow, diag)])
    if len(diffs) == 1:  # paired over the test examples
        per_example = flow[0]["elbo_per_example"] - diag[0]["elbo_per_example"]
        se = float(np.std(per_example) / np.sqrt(len(per_example)))
        spread = f"± {se:.2f} (paired standard error over test examples)"
    else:  # paired over the seeds
        spread = (f"± {np.std(diffs, ddof=1):.2f} (sd over {len(diffs)} "
                  f"seeds; per seed {', '.join(f'{d:+.2f}' for d in diffs)}"
                  f"; flow ahead or equal in {int(np.sum(diffs >= 0))} of "
                  f"{len(diffs)})")
    verdict = "yes" if np.mean(diffs) >= 0 else "no"
    return [
        f"Flow vs diagonal posterior after the same {flow[0]['steps']} "
        f"steps: test ELBO {mean_sd([r['elbo'] for r in flow])} ({FLOW}) "
        f"vs {mean_sd([r['elbo'] for r in diag])} ({REFERENCE}), "
        f"difference {np.mean(diffs):+.2f} {spread}; flow ELBO at least as "
        f"good as the diagonal posterior's: **{verdict}**.",
    ]


def quick_train_examples(n):
    """quality.py's --quick cut, rounded down to whole batches: 1400 of the
    1437 digits. One batch shape means one XLA compilation of each train
    step instead of three (batch 100, the last batch of 37, and the
    shape-generic retrace Keras makes after seeing two shapes), which is
    most of a quick run's time."""
    return min(n, QUICK["train_examples"]) // BATCH_SIZE * BATCH_SIZE


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int,
                   help=f"epochs for every model (default {CFG['epochs']})")
    p.add_argument("--seeds", type=int, nargs="+",
                   help="model seeds (weights, noise, shuffling); several "
                   "give mean ± sd (default: "
                   f"{' '.join(map(str, SEEDS))}, with --quick {SEEDS[0]})")
    p.add_argument("--num-samples", type=int, default=EVAL_SAMPLES,
                   help="K of the test log-likelihood (default: "
                   "%(default)s)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK['epochs']} epochs, whole "
                   f"batches of the train set, {QUICK['test_examples']} "
                   "test examples, K = "
                   f"{QUICK['eval_samples']}")
    p.add_argument("--output", help="also write the report (markdown) here")
    args = p.parse_args(argv)
    for name in ("epochs", "num_samples"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    total_start = time.perf_counter()
    x_train, x_test = load("digits")
    epochs = args.epochs or CFG["epochs"]
    eval_samples = args.num_samples
    seeds = args.seeds or list(SEEDS)
    if args.quick:
        seeds = args.seeds or list(SEEDS[:1])
        epochs = args.epochs or QUICK["epochs"]
        x_train = x_train[:quick_train_examples(len(x_train))]
        x_test = x_test[:QUICK["test_examples"]]
        eval_samples = min(eval_samples, QUICK["eval_samples"])
    print(f"digits: {len(x_train)} train / {len(x_test)} test, {epochs} "
          f"epochs, batch {BATCH_SIZE}, seeds {seeds}", flush=True)
    runs = {label: [] for label, _, _ in MODELS}
    for seed in seeds:
        for label, builder, _ in MODELS:
            runs[label].append(run_one(label, builder, (x_train, x_test),
                                       epochs, eval_samples, seed))
    latents = {label: latent for label, _, latent in MODELS}
    report = ["## Model family: priors, flow posterior, hierarchy", ""]
    report += table(runs, latents, len(x_train), len(x_test), seeds)
    report += [""] + flow_comparison(runs) + [""]
    report += [f"total wall time: {time.perf_counter() - total_start:.0f} s"]
    report += machine_lines()
    emit(report, args.output)


if __name__ == "__main__":
    main()
