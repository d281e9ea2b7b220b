"""Gradient estimators: hard discrete latents, and DReG against standard IWAE.

`harness.digits` (binarized with seed 0; the first 1400 of 1437 train, 360
test). Every model: MLP 64-256-128, mirrored decoder, Bernoulli likelihood,
Adam 1e-3, batch 100, the same epochs, XLA, per seed the same initial weights.

```none
1. one categorical latent, C = 10 classes, uniform prior, trained by
   Gumbel-softmax   relaxed z, τ annealed 1 -> 0.5 over the first half (ELBO)
   REINFORCE + CV   hard z (CategoricalSample), NVIL: ELBO(baseline="learned")
   VIMCO            hard z, IWAE(5): leave-one-out baselines
   plain REINFORCE  hard z, ELBO(baseline="none"), for reference
   exact test log p(x) = logsumexp_c [log p(x | c) + log(1/10)], ELBO =
       Σ_c q(c|x) [log p(x, c) - log q(c|x)] (the 10 codes through vae.decoder,
       Bernoulli written out; the Gumbel model scored as its discrete model);
       cross-check vae.log_likelihood (K = 1000)
   gradient variance: at the REINFORCE + CV model's weights (b(x) kept, c
       settled there), R draws of compute_objective's encoder gradient on 100
       training digits; Σ_i Var(g_i) against plain REINFORCE's (K = 1);
       score function with normalize_signal=False (unbiased; training divides
       by max(1, running sd), a scalar); bias: |mean - exact| / |exact| (the
       exact ELBO gradient by enumeration); noise floor sqrt(Σ Var / R)/|exact|
2. Gaussian z 8, IWAE(K) and IWAE(K, gradient="dreg"), K = 5, 50: test
   log p(x) by vae.log_likelihood (K = 1000); encoder SNR of both estimators
   at each trained model: |mean| / sd per weight over R single-example draws,
   averaged over the weights the example reaches (sd > 0: most first-layer
   weights see a 0 pixel) and 5 test digits (Rainforth et al. 2018)
```

    python benchmarks/discrete_estimators.py           # writes RESULTS
    python benchmarks/discrete_estimators.py --quick   # smoke test, < 1 min
"""

import sys

import harness  # first: it sets TF's log level before TF is imported
import keras
import keras_vae
import numpy as np

import baselines
from gradient_draws import draws, estimator, exact, exact_gradient, snr
from harness import mean_sd
from keras_vae.objectives import ELBO, IWAE

RESULTS = "benchmarks/results_discrete_estimators.md"
HIDDEN, CLASSES, LATENT, BATCH = (256, 128), 10, 8, 100
VIMCO_K = 5
GUMBEL, NVIL, VIMCO, PLAIN = ("Gumbel-softmax (τ 1 → 0.5)",
                              "REINFORCE + control variates (NVIL)",
                              f"VIMCO (K = {VIMCO_K})", "plain REINFORCE")
TRAINED = {GUMBEL: lambda: ELBO(), NVIL: lambda: ELBO(),
           VIMCO: lambda: IWAE(VIMCO_K), PLAIN: lambda: ELBO(baseline="none")}
DEFAULTS = {"epochs": 100, "seeds": [0, 1, 2], "dreg_seeds": [0, 1],
            "draws": 200, "ks": [5, 50], "eval_k": 1000, "warmup": 30,
            "snr_examples": 5, "trained": list(TRAINED),
            "trained_by": ["standard", "dreg"]}
# --quick: plain REINFORCE and standard IWAE train by the code path of the
# others (their estimators are still drawn).
QUICK = {"epochs": 1, "seeds": [0], "dreg_seeds": [0], "draws": 4,
         "ks": [5], "eval_k": 20, "warmup": 2, "snr_examples": 2,
         "trained": [GUMBEL, NVIL, VIMCO], "trained_by": ["dreg"],
         "train_examples": 300, "test_examples": 40}


# ------------------------------------------------------------------ models
def discrete_vae(relaxed, seed, temperature=1.0):
    """64-256-128 -> logits (1, 10) -> one-hot z -> 128-256-64; the same
    initial weights for a seed, whichever sampler."""
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((64,))
    head = keras_vae.GumbelSoftmaxHead(1, CLASSES)(baselines.mlp(x_in, HIDDEN))
    logits = keras_vae.KLRegularizer()(head)
    sampler = (keras_vae.GumbelSoftmaxSample(temperature, seed=seed) if relaxed
               else keras_vae.CategoricalSample(seed=seed))
    z = keras.layers.Flatten()(sampler(logits))
    out = keras.layers.Dense(64)(baselines.mlp(z, HIDDEN[::-1]))
    return keras_vae.VAEModel(x_in, out)


def compile_with(vae, objective, jit, optimizer=None):
    """Adam 1e-3, BernoulliNLL; without `jit` (--quick) eager: tracing
    would cost more than the few steps."""
    vae.compile(optimizer=optimizer or keras.optimizers.Adam(
        baselines.LEARNING_RATE), loss=keras_vae.losses.BernoulliNLL(),
        objective=objective, jit_compile=jit, run_eagerly=not jit)
    return vae


def fit(vae, x, seed, epochs, callbacks=()):
    ds = harness.dataset(x, BATCH, shuffle_seed=seed)
    _, seconds = harness.timed(lambda: vae.fit(
        ds, epochs=epochs, verbose=0, callbacks=list(callbacks)))
    return seconds


# ------------------------------------------------- gradient variance
def variances(vae, x, args, jit, seed):
    """{estimator: (Σ Var, |mean - exact| / |exact| or False, noise floor)}
    at the weights of `vae` (trained by NVIL), on the batch x."""
    truth, out = exact_gradient(vae, x), {}
    norm = np.linalg.norm(truth)

    def record(name, model, target=True):
        g = draws(estimator(model, jit), x, args.draws)
        total, err = g.var(0, ddof=1).sum(), g.mean(0) - truth
        out[name] = (total, target and np.linalg.norm(err) / norm,
                     np.sqrt(total / len(g)) / norm)

    learned = [w.numpy() for w in vae.objective_layer.weights]
    for name, baseline in (("NVIL: c + b(x)", "learned"),
                           ("running mean c only", "running")):
        # SGD(0): the weights stay put while c settles; b(x) as trained.
        compile_with(vae, ELBO(baseline=baseline, normalize_signal=False),
                     jit, optimizer=keras.optimizers.SGD(0.0))
        if baseline == "learned":
            vae.objective_layer.set_weights(learned)
        vae.fit(np.tile(x, (args.warmup, 1)), batch_size=len(x), verbose=0)
        record(name, vae)
    for name, objective in ((PLAIN, ELBO(baseline="none")),
                            (f"{PLAIN}, K = {VIMCO_K}",
                             ELBO(VIMCO_K, baseline="none")),
                            (VIMCO, IWAE(VIMCO_K))):
        record(name, compile_with(vae, objective, jit), name != VIMCO)
    gumbel = compile_with(discrete_vae(True, seed, 0.5), ELBO(), jit)
    for a, b in zip(*[m.encoder.trainable_weights + m.decoder.trainable_weights
                      for m in (gumbel, vae)]):
        a.assign(b)                                     # the same weights
    record("Gumbel-softmax relaxation, τ = 0.5", gumbel)
    return out


# ------------------------------------------------------------------- parts
def discrete_part(x_train, x_test, args, jit):
    scores, var = {}, {}
    steps = args.epochs * (len(x_train) // BATCH)
    for seed in args.seeds:
        for name in args.trained:
            keras.backend.clear_session()     # free the last model's programs
            vae = compile_with(discrete_vae(name == GUMBEL, seed),
                               TRAINED[name](), jit)
            anneal = [keras_vae.callbacks.TemperatureAnnealing(
                max(1, steps // 2), start=1.0, end=0.5)] * (name == GUMBEL)
            seconds = fit(vae, x_train, seed, args.epochs, anneal)
            log_px, elbo = (t.numpy() for t in exact(vae, x_test))
            is_px = vae.log_likelihood(x_test, num_samples=args.eval_k,
                                       seed=seed)
            row = (log_px.mean(), is_px.mean(), elbo.mean(), seconds)
            scores.setdefault(name, []).append(row)
            print(f"seed {seed} {name}: exact log p(x) {row[0]:.3f}, IS "
                  f"{row[1]:.3f}, exact ELBO {row[2]:.3f}, {seconds:.0f} s",
                  flush=True)
            if name == NVIL:
                for est, v in variances(vae, x_train[:BATCH], args, jit,
                                        seed).items():
                    var.setdefault(est, []).append(v)
                    print(f"seed {seed} Σ Var {est}: {v[0]:.4g}", flush=True)
    return scores, var


def dreg_part(x_train, x_test, args, jit):
    rows = {}
    for seed in args.dreg_seeds:
        for k in args.ks:
            for gradient in args.trained_by:
                keras.backend.clear_session()
                keras.utils.set_random_seed(seed)
                vae = compile_with(baselines.mlp_vae(64, HIDDEN, LATENT, seed),
                                   IWAE(k, gradient=gradient), jit)
                seconds = fit(vae, x_train, seed, args.epochs)
                log_px = vae.log_likelihood(x_test, num_samples=args.eval_k,
                                            seed=seed).mean()
                s = [snr(compile_with(vae, IWAE(k, gradient=g), jit),
                         x_test[:args.snr_examples], args.draws, jit)
                     for g in ("standard", "dreg")]
                rows.setdefault((k, gradient), []).append(
                    (log_px, *s, s[1] / s[0], seconds))
                print(f"seed {seed} IWAE K={k} {gradient}: log p(x) "
                      f"{log_px:.3f}, SNR standard {s[0]:.3f}, dreg "
                      f"{s[1]:.3f}, {seconds:.0f} s", flush=True)
    return rows


def main(argv=None):
    p = harness.parser(__doc__, f"a smoke run, eager: {QUICK}")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--dreg-seeds", type=int, nargs="+")
    p.add_argument("--draws", type=int, help="gradient draws R")
    p.add_argument("--ks", type=int, nargs="+", help="K of the DReG part")
    p.add_argument("--eval-k", type=int, help="K of vae.log_likelihood")
    args = harness.fill(p.parse_args(argv), DEFAULTS, QUICK)
    harness.positive(p, args, "epochs", "draws", "eval_k")
    if args.output is None and not args.quick:
        args.output = RESULTS
    x_train, x_test = harness.digits(0, split_seed=0)
    x_train = harness.whole_batches(x_train, BATCH)
    if args.quick:
        x_train = x_train[:QUICK["train_examples"]]
        x_test = x_test[:QUICK["test_examples"]]
    jit = not args.quick
    report = harness.Report("Gradient estimators: discrete latents, DReG")
    scores, var = discrete_part(x_train, x_test, args, jit)
    dreg = dreg_part(x_train, x_test, args, jit)

    budget = (f"{args.epochs} epochs × {len(x_train) // BATCH} steps, batch "
              f"{BATCH}, Adam 1e-3, XLA={jit}")
    col = lambda rs, i, d=2: mean_sd([r[i] for r in rs], d)  # noqa: E731
    plain = np.array([v[0] for v in var[PLAIN]])
    report.add(
        f"## One categorical latent (10 classes): {budget}, seeds "
        f"{args.seeds}, mean ± sd", "", *harness.table(
            ["estimator", "test log p(x), exact", f"IS, K = {args.eval_k}",
             "test ELBO, exact", "train s"],
            [[n, col(rs, 0), col(rs, 1), col(rs, 2), f"{col(rs, 3, 0)}"]
             for n, rs in scores.items()]), "",
        f"Encoder gradient at the REINFORCE + CV weights, batch {BATCH}, "
        f"R = {args.draws} (score function: normalize_signal=False):", "",
        *harness.table(
            ["estimator", "Σ Var(g)", "reduction vs plain REINFORCE",
             "|mean − exact| / |exact| (noise floor)"],
            [[n, f"{np.mean([v[0] for v in vs]):.4g}",
              mean_sd(plain / np.array([v[0] for v in vs]), 1) + "x",
              "(IWAE_5's gradient)" if vs[0][1] is False else
              f"{col(vs, 1, 3)} ({np.mean([v[2] for v in vs]):.3f})"]
             for n, vs in var.items()]), "",
        f"## DReG vs standard IWAE, Gaussian z {LATENT}: {budget}, seeds "
        f"{args.dreg_seeds}, R = {args.draws}", "", *harness.table(
            ["K", "trained by", f"test log p(x), K = {args.eval_k}",
             "encoder SNR, standard", "encoder SNR, DReG", "ratio", "train s"],
            [[k, g, col(rs, 0), col(rs, 1, 3), col(rs, 2, 3),
              col(rs, 3, 1) + "x", col(rs, 4, 0)]
             for (k, g), rs in dreg.items()], "rlrrrrr"))
    report.emit(args.output)
    return scores, var, dreg


if __name__ == "__main__":
    sys.exit(main() and 0)
