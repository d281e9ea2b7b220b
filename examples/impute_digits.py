"""Train a VAE on incomplete 8x8 digits and impute the missing pixels.

The running example of missing data: the best guess for a missing pixel
depends on the pixels that are observed. The training images themselves
have pixels missing (NaN, at random, `--train-missing` of them); the model
is compiled with `missing_values=float("nan")`, so its likelihood scores
only the observed pixels and the encoder sees 0 where a pixel is missing,
and it is trained by the importance-weighted bound (MIWAE, Mattei &
Frellsen 2019), with 10 % of the training digits held out for early
stopping on their bound (`keras.callbacks.EarlyStopping`: 1,300 digits
are overfitted quickly):

```none
log p(x_obs) >= E[log (1/K) Σ_k p(x_obs | z_k) p(z_k) / q(z_k | x_obs)]
E[x_mis | x_obs] ~ Σ_k w̃_k E[x_mis | z_k]          (VAEModel.impute, self-normalised IS)
```

Pixels are the digits' grey levels 0..16, scaled to the grid j / 16 of
[0, 1], under a mixture of two discretized logistics with 17 bins
(`DiscretizedLogisticMixtureNLL`: a normalised density over the 17 levels
that knows they are ordered, so log p(x_obs) is in nats). On the test digits with 25 / 50 / 75 % of the
pixels missing at random, and with the bottom half missing, it reports the
root-mean-square error of the imputed pixels (grey levels scaled to
[0, 1]) against what a user would pick instead: the column mean and
scikit-learn's `KNNImputer` and `IterativeImputer` (fit on the same
incomplete training set); the VAE with the encoder's proposal and with each
example's posterior refined (`refine_steps`); and the test log p(x_obs).

It writes to --out: one picture per pattern (rows: observed with missing
pixels shown grey, imputed, true), results.json and a table.

Run from the repository root:
    python examples/impute_digits.py                     # ~4 min on 2 CPU cores
    python examples/impute_digits.py --quick --out /tmp/impute_smoke
"""

import argparse
import json
import pathlib
import time

from _quiet_tf import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()  # TF's C++ start-up lines off (see _quiet_tf.py)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_vae  # noqa: E402
from mnist_vae import positive_int  # noqa: E402

LEVELS = 17  # grey levels 0..16 of scikit-learn's digits
PATTERNS = ("random 25%", "random 50%", "random 75%", "bottom half")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--epochs", type=positive_int, default=400,
        help="most epochs; early stopping ends sooner (default: "
        "%(default)s)")
    add("--batch-size", type=positive_int, default=64)
    add("--latent-dim", type=positive_int, default=8)
    add("--train-missing", type=float, default=0.5,
        help="fraction of training pixels missing (default: %(default)s)")
    add("--num-samples", type=positive_int, default=1000,
        help="K of impute and log_likelihood (default: %(default)s)")
    add("--refine-steps", type=positive_int, default=100)
    add("--seed", type=int, default=0)
    add("--out", default="impute_digits_out")
    add("--quick", action="store_true",
        help="a smoke run: 5 epochs, 60 test digits, K = 32, two "
        "patterns, no amortization gap, 2 IterativeImputer rounds")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.num_samples, args.refine_steps = 5, 32, 5
    return args


def load_digits(seed):
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    x = sk_digits().data.astype("float32") / (LEVELS - 1)  # j / 16, 64 px
    return train_test_split(x, test_size=0.2, random_state=seed)


def mask_pattern(name, shape, rng):
    """True where a pixel is missing."""
    if name == "bottom half":
        missing = np.zeros(shape, bool)
        missing[:, shape[1] // 2:] = True  # rows 4..7 of the 8x8 image
        return missing
    rate = float(name.split()[1].rstrip("%")) / 100.0
    return rng.random(shape) < rate


def build_vae(latent_dim, seed):
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((64,))
    h = keras.layers.Dense(128, activation="relu")(x_in)
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(latent_dim)(h))
    z = keras_vae.ReparameterizedSample(seed=seed)(q)
    h = keras.layers.Dense(128, activation="relu")(z)
    likelihood = keras_vae.losses.DiscretizedLogisticMixtureNLL(
        num_components=2, num_bins=LEVELS)
    logits = keras.layers.Dense(likelihood.params_size((64,)))(h)
    return keras_vae.VAEModel(x_in, logits), likelihood


def rmse(filled, truth, missing):
    diff = (filled - truth)[missing]
    return float(np.sqrt(np.mean(diff**2)))


def fit_baselines(train_incomplete, iterations=10):
    """What a user would pick instead, fit once on the incomplete training
    set: {name: fitted scikit-learn imputer}; `iterations` rounds of
    IterativeImputer."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    return {
        name: imputer.fit(train_incomplete) for name, imputer in (
            ("column mean", SimpleImputer(strategy="mean",
                                          keep_empty_features=True)),
            ("KNNImputer (k=5)", KNNImputer(n_neighbors=5,
                                            keep_empty_features=True)),
            ("IterativeImputer", IterativeImputer(
                max_iter=iterations, random_state=0,
                keep_empty_features=True)),
        )
    }


def save_pictures(pattern, incomplete, filled, truth, out):
    shown = np.where(np.isnan(incomplete), 0.5, incomplete)  # missing: grey
    rows = np.concatenate([shown[:10], filled[:10], truth[:10]])
    keras_vae.plotting.save_grid(
        rows, out / f"impute_{pattern.replace(' ', '_').rstrip('%')}.png",
        ncols=10, image_shape=(8, 8),
        title=f"{pattern} missing: observed (grey = missing) / imputed / "
              "true",
    )


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    x_train, x_test = load_digits(args.seed)
    if args.quick:
        x_test = x_test[:60]
    train_incomplete = np.where(
        rng.random(x_train.shape) < args.train_missing, np.nan, x_train
    ).astype("float32")
    print(f"Data: scikit-learn digits 8x8, {len(x_train)} train "
          f"({args.train_missing:.0%} of pixels missing) / {len(x_test)} "
          "test")

    vae, likelihood = build_vae(args.latent_dim, args.seed)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), loss=likelihood,
                objective=keras_vae.objectives.IWAE(num_samples=5),
                missing_values=float("nan"))
    start = time.time()
    stop = keras.callbacks.EarlyStopping(patience=20,
                                         restore_best_weights=True)
    history = vae.fit(train_incomplete, batch_size=args.batch_size,
                      epochs=args.epochs, validation_split=0.1,
                      callbacks=[stop], verbose=0)
    epochs = len(history.history["loss"])
    print(f"Trained MIWAE (K=5) for {epochs} epochs (early stopping on the "
          f"held-out bound) in {time.time() - start:.0f} s")

    imputers = fit_baselines(train_incomplete, 2 if args.quick else 10)
    results = {}
    k = args.num_samples
    patterns = PATTERNS[1::2] if args.quick else PATTERNS
    for pattern in patterns:
        missing = mask_pattern(pattern, x_test.shape, rng)
        incomplete = np.where(missing, np.nan, x_test).astype("float32")
        row = {name: rmse(np.clip(imputer.transform(incomplete), 0.0, 1.0),
                          x_test, missing)
               for name, imputer in imputers.items()}
        filled = vae.impute(incomplete, num_samples=k, seed=args.seed)
        row["VAE impute"] = rmse(filled, x_test, missing)
        refined = vae.impute(incomplete, num_samples=k, seed=args.seed,
                             refine_steps=args.refine_steps)
        row[f"VAE impute, refined ({args.refine_steps} steps)"] = rmse(
            refined, x_test, missing)
        log_px = vae.log_likelihood(incomplete, num_samples=k,
                                    seed=args.seed)
        row["test log p(x_obs) (nats)"] = float(log_px.mean())
        row["observed pixels per digit"] = float((~missing).sum(1).mean())
        results[pattern] = row
        save_pictures(pattern, incomplete, refined, x_test, out)
        print(f"{pattern}: VAE RMSE {row['VAE impute']:.4f}, "
              f"log p(x_obs) {row['test log p(x_obs) (nats)']:.2f} nats")

    names = list(results[patterns[0]])
    print("\n| imputation RMSE (grey levels in [0, 1]) | " + " | ".join(patterns)
          + " |")
    print("| --- |" + " ---: |" * len(patterns))
    for name in names:
        fmt = "{:.2f}" if "nats" in name or "pixels" in name else "{:.4f}"
        print(f"| {name} | " + " | ".join(
            fmt.format(results[p][name]) for p in patterns) + " |")
    if not args.quick:
        complete_ll = vae.log_likelihood(x_test, num_samples=k,
                                         seed=args.seed)
        gaps = keras_vae.evaluate.amortization_gap(
            vae, x_test, refine_steps=args.refine_steps, num_samples=k,
            elbo_samples=10, seed=args.seed)
        results["complete test digits"] = {
            "test log p(x) (nats)": float(complete_ll.mean()), **gaps}
        print(f"\nComplete test digits: log p(x) {complete_ll.mean():.2f} "
              f"nats; amortization gap {gaps['amortization_gap']:.2f}, "
              f"approximation gap {gaps['approximation_gap']:.2f} nats "
              f"({args.refine_steps} refinement steps)")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"Wrote {out}/results.json and impute_*.png")


if __name__ == "__main__":
    main()
