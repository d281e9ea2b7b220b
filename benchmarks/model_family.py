"""Model family: priors, a flow posterior and a two-level VAE at one budget.

Five VAEs on `quality.py`'s data (8x8 digits, binarized, 1437 / 360) and
budget (100 epochs, batch 100, Adam 1e-3, ELBO K = 1, MLP 64-256-128-(z 8)
mirrored, XLA: `VAEModel.compile`'s default, read back and printed):

```none
standard normal  p(z) = N(0, I), q(z|x) a diagonal Gaussian (as all but IAF)
mixture prior    p(z) = sum_c pi_c N(m_c, diag s_c^2), C = 10, all learned
VampPrior        p(z) = (1/U) sum_u q(z | u_u), U = 100 learned pseudo-inputs
                 started from training images (Tomczak & Welling 2017)
IAF posterior    the diagonal Gaussian through 2 IAF steps (MADE 64 hidden
                 units, encoder features as context; Kingma et al. 2016)
hierarchical     p(z2) p(z1|z2) p(x|z1), q(z2|x) q(z1|x,z2) (top-down),
                 z1: 8, z2: 4, p(z1|z2) through a Dense(64)
```

Per model, on the test set: log p(x) (K = 1000), the ELBO (100 samples),
their gap, the KL (`evaluate`'s `kl` over 10 passes: sampled for the
mixture priors and the flow; per level for the hierarchy), active units
(Burda et al. 2015: Cov_x of the posterior mode > 0.01), parameters and
training time; mean ± sd over seeds 0, 1, 2 (weights and noise), and
whether the flow's test ELBO is at least as good as the diagonal
posterior's after the same steps (at 100 epochs no, at 300 yes: the
diagonal model overfits first). The VampPrior's pseudo-inputs start at
training images kept 0.1 inside (0, 1), where the sigmoid still learns.

    python benchmarks/model_family.py          # 3 seeds, ~10 min on 2 CPU cores
    python benchmarks/model_family.py --quick  # smoke test
    python benchmarks/model_family.py --seeds 0 --epochs 300 --output family.md
"""

import sys
import time

import harness  # first: it sets TF's log level before TF is imported
import keras
import keras_vae
import numpy as np

import baselines
import quality
from baselines import mlp
from harness import mean_sd

CFG = quality.CONFIGS["digits"]        # hidden (256, 128), latent 8
HIDDEN, LATENT = CFG["hidden"], CFG["latent"]
COMPONENTS, PSEUDO_INPUTS, PSEUDO_MARGIN = 10, 100, 0.1
IAF_FLOWS, IAF_HIDDEN = 2, (64,)
TOP_LATENT, TOP_HIDDEN = 4, 64         # z2 and p(z1 | z2) of the hierarchy
SEEDS, KL_PASSES, ACTIVE_THRESHOLD = (0, 1, 2), 10, 0.01  # Burda et al.
QUICK = {"epochs": 1, "train_examples": 500, "test_examples": 50,
         "eval_samples": 10, "elbo_samples": 5, "kl_passes": 1}
REFERENCE, FLOW = "standard normal", "IAF posterior"
MIXTURE = f"mixture prior ({COMPONENTS} comp.)"  # not in --quick: VampPrior's


def head(h, latent, prior=None, name=None):
    # Layers are made in the order of the README's run: it fixes the init.
    q = keras_vae.GaussianEncoderHead(latent)(h)
    return keras_vae.KLRegularizer(prior=prior, name=name)(q)


def decoder(z, dim):
    return keras.layers.Dense(dim)(mlp(z, HIDDEN[::-1]))


def with_prior(make_prior):
    def build(x_in, dim, seed):
        prior = make_prior(seed) if make_prior else None
        z = keras_vae.ReparameterizedSample(seed=seed)(
            head(mlp(x_in, HIDDEN), LATENT, prior))
        return decoder(z, dim)
    return build


def build_iaf(x_in, dim, seed):
    h = mlp(x_in, HIDDEN)
    loc, scale = head(h, LATENT)
    z = keras_vae.IAFSample(IAF_FLOWS, IAF_HIDDEN, seed=seed)([loc, scale, h])
    return decoder(z, dim)


def build_hierarchical(x_in, dim, seed):
    h = mlp(x_in, HIDDEN)
    z2 = keras_vae.ReparameterizedSample(seed=seed, name="z2")(
        head(h, TOP_LATENT, name="kl_z2"))
    p1 = keras_vae.GaussianEncoderHead(LATENT, name="p_z1")(
        keras.layers.Dense(TOP_HIDDEN, activation="relu")(z2))
    q1 = keras_vae.GaussianEncoderHead(LATENT, name="q_z1")(
        keras.layers.Concatenate()([h, z2]))
    q1 = keras_vae.KLRegularizer(name="kl_z1")([q1, p1])
    # Its own noise stream: with z2's seed, z1's first 4 coordinates would
    # get z2's eps.
    z1 = keras_vae.ReparameterizedSample(seed=seed + 1, name="z1")(q1)
    return decoder(z1, dim)


MODELS = {  # label: (builder, latent description)
    REFERENCE: (with_prior(None), f"z {LATENT}"),
    MIXTURE: (with_prior(
        lambda s: keras_vae.priors.MixtureOfGaussians(COMPONENTS, seed=s)),
        f"z {LATENT}"),
    f"VampPrior ({PSEUDO_INPUTS} pseudo-inputs)": (with_prior(
        lambda s: keras_vae.priors.VampPrior(
            PSEUDO_INPUTS, pseudo_input_activation="sigmoid", seed=s)),
        f"z {LATENT}"),
    FLOW: (build_iaf, f"z {LATENT}, {IAF_FLOWS} flows"),
    "hierarchical": (build_hierarchical, f"z1 {LATENT}, z2 {TOP_LATENT}"),
}


def build(builder, x_train, seed, quick=False):
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((x_train.shape[1],))
    vae = keras_vae.VAEModel(x_in, builder(x_in, x_train.shape[1], seed))
    for level in vae.levels:  # VampPrior: start from training examples
        if isinstance(level.kl.prior, keras_vae.priors.VampPrior):
            rows = np.random.default_rng(seed).choice(
                len(x_train), PSEUDO_INPUTS, replace=False)
            level.kl.prior.set_pseudo_inputs(x_train[rows],
                                             margin=PSEUDO_MARGIN)
    return baselines.compile_vae(vae, **harness.compile_kwargs(quick))


def run_one(label, data, epochs, k, k_elbo, kl_passes, seed, quick=False):
    x_train, x_test = data
    vae = build(MODELS[label][0], x_train, seed, quick)
    _, train_s = harness.timed(lambda: vae.fit(
        quality.make_dataset(x_train), epochs=epochs, verbose=0,
        shuffle=False))
    start = time.perf_counter()
    log_px = vae.log_likelihood(x_test, num_samples=k)
    elbo = vae.elbo(x_test, num_samples=k_elbo)
    metrics = vae.evaluate(np.tile(x_test, (kl_passes, 1)), verbose=0,
                           batch_size=quality.BATCH_SIZE, return_dict=True)
    several = len(vae.levels) > 1
    active = [keras_vae.evaluate.active_units(
        vae, x_test, threshold=ACTIVE_THRESHOLD,
        level=level.name if several else None)[0] for level in vae.levels]
    row = {"label": label, "epochs": epochs, "k": k, "k_elbo": k_elbo,
           "steps": int(vae.optimizer.iterations.numpy()),
           "jit_compile": vae.jit_compile, "params": int(sum(
               np.prod(w.shape) for w in vae.trainable_weights)),
           "train_s": train_s, "log_px": float(np.mean(log_px)),
           "log_px_se": float(np.std(log_px) / np.sqrt(len(log_px))),
           "elbo": float(np.mean(elbo)), "elbo_per_example": elbo,
           "kl": float(metrics["kl"]), "active": active,
           "kl_levels": [float(metrics[f"kl_{level.name}"])
                         for level in vae.levels] if several else [],
           "level_names": [level.name for level in vae.levels],
           "nonfinite": int(np.sum(~np.isfinite(log_px))
                            + np.sum(~np.isfinite(elbo)))}
    print(f"  seed {seed} {label:34s} XLA {vae.jit_compile}, train "
          f"{train_s:.1f} s, eval {time.perf_counter() - start:.1f} s, log p(x)"
          f" {row['log_px']:.3f}, ELBO {row['elbo']:.3f}", flush=True)
    return row


def table(runs, n_train, n_test, seeds, kl_passes):
    first, several = runs[REFERENCE][0], len(seeds) > 1
    no_xla = sorted({r["label"] for rs in runs.values() for r in rs
                     if not r["jit_compile"]})
    rows = []
    for label, rs in runs.items():
        kl = mean_sd([r["kl"] for r in rs])
        if rs[0]["kl_levels"]:
            kl += " (" + ", ".join(f"{n} {v:.2f}" for n, v in zip(
                rs[0]["level_names"], np.mean([r["kl_levels"] for r in rs],
                                              0))) + ")"
        multi = len(rs[0]["active"]) > 1
        counts = [[r["active"][i] for r in rs] for i in range(len(
            rs[0]["active"]))]   # per level: one count when seeds agree
        active = " + ".join((f"{n} " if multi else "") + (
            str(c[0]) if len(set(c)) == 1 else mean_sd(c, 1))
            for n, c in zip(rs[0]["level_names"], counts))
        diff = [r["log_px"] - q["log_px"] for r, q in zip(rs, runs[REFERENCE])]
        rows.append([
            label, MODELS[label][1], f"{rs[0]['params']:,}",
            mean_sd([r["train_s"] for r in rs], 1),
            mean_sd([r["log_px"] for r in rs]) if several else
            f"{rs[0]['log_px']:.2f} ± {rs[0]['log_px_se']:.2f}",
            mean_sd([r["elbo"] for r in rs]),
            mean_sd([r["log_px"] - r["elbo"] for r in rs]), kl, active,
            "—" if label == REFERENCE else f"{np.mean(diff):+.2f}"
            + (f" ± {np.std(diff, ddof=1):.2f}" if several else "")])
    return [
        f"### digits (MLP 64-{'-'.join(map(str, HIDDEN))}-(z), Bernoulli): "
        f"{n_train} train / {n_test} test examples, {first['epochs']} epochs "
        f"({first['steps']} steps) each, batch {quality.BATCH_SIZE}, Adam "
        f"{baselines.LEARNING_RATE:g}, ELBO K=1, seeds "
        f"{', '.join(map(str, seeds))}, "
        + (f"WARNING: jit_compile=False for {no_xla}" if no_xla else
           "XLA (jit_compile=True, read back from each model)"), "",
        *harness.table(
            ["model", "latent", "params", "train time (s)",
             f"test log p(x) (K={first['k']})",
             f"test ELBO (K={first['k_elbo']})", "log p(x) - ELBO", "KL",
             "active units", f"log p(x) vs {REFERENCE}"], rows, "ll" + "r" * 8),
        "",
        "Nats per test example, mean over the test set" + (
            f", then mean ± sd over {len(seeds)} seeds" if several else
            " (± its standard error)") + f"; KL over {kl_passes} pass(es); "
        "params include pseudo-inputs and mixture parameters; train time "
        "includes tracing and XLA compilation.",
        *(["WARNING: some estimates were not finite."] if any(
            r["nonfinite"] for rs in runs.values() for r in rs) else []),
    ]


def flow_comparison(runs):
    flow, diag = runs[FLOW], runs[REFERENCE]
    diffs = np.array([f["elbo"] - d["elbo"] for f, d in zip(flow, diag)])
    if len(diffs) == 1:  # paired over the test examples
        d = flow[0]["elbo_per_example"] - diag[0]["elbo_per_example"]
        spread = (f"± {np.std(d) / np.sqrt(len(d)):.2f} (paired standard "
                  "error over test examples)")
    else:
        spread = (f"± {np.std(diffs, ddof=1):.2f} (sd over {len(diffs)} "
                  f"seeds; per seed {', '.join(f'{d:+.2f}' for d in diffs)})")
    return [f"Flow vs diagonal posterior after the same {flow[0]['steps']} "
            f"steps: test ELBO {mean_sd([r['elbo'] for r in flow])} vs "
            f"{mean_sd([r['elbo'] for r in diag])}, difference "
            f"{np.mean(diffs):+.2f} {spread}; flow ELBO at least as good as "
            f"the diagonal posterior's: "
            f"**{'yes' if np.mean(diffs) >= 0 else 'no'}**."]


def main(argv=None):
    p = harness.parser(__doc__, f"smoke test: 1 seed, sizes {QUICK}, no "
                       "mixture prior, eager train steps")
    p.add_argument("--epochs", type=int, help="epochs (default 100)")
    p.add_argument("--seeds", type=int, nargs="+", help="model seeds "
                   "(default 0 1 2; with --quick 0)")
    p.add_argument("--num-samples", type=int, default=quality.EVAL_SAMPLES,
                   help="K of the test log-likelihood (default %(default)s)")
    args = p.parse_args(argv)
    harness.positive(p, args, "epochs", "num_samples")
    report = harness.Report("Model family: priors, flow posterior, hierarchy")
    x_train, x_test = quality.load("digits")
    epochs, seeds = args.epochs or CFG["epochs"], args.seeds or list(SEEDS)
    k, k_elbo, kl_passes = args.num_samples, quality.ELBO_SAMPLES, KL_PASSES
    if args.quick:
        seeds, epochs = args.seeds or [SEEDS[0]], args.epochs or QUICK["epochs"]
        x_train = harness.whole_batches(x_train[:QUICK["train_examples"]],
                                        quality.BATCH_SIZE)
        x_test = x_test[:QUICK["test_examples"]]
        k, k_elbo = min(k, QUICK["eval_samples"]), QUICK["elbo_samples"]
        kl_passes = QUICK["kl_passes"]
    runs = {label: [] for label in MODELS if not (args.quick
                                                  and label == MIXTURE)}
    for seed in seeds:
        for label in runs:
            runs[label].append(run_one(label, (x_train, x_test), epochs, k,
                                       k_elbo, kl_passes, seed,
                                       args.quick))
    report.add(*table(runs, len(x_train), len(x_test), seeds, kl_passes), "",
               *flow_comparison(runs))
    report.emit(args.output)


if __name__ == "__main__":
    sys.exit(main())
