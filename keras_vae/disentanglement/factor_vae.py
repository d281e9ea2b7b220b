"""The FactorVAE disentanglement score of Kim & Mnih (2018)."""

import numpy as np

from keras_vae import _validation as v
from keras_vae.disentanglement import _inputs, _sampling


def factor_vae_score(representation_fn, sampler, batch_size=64,
                     num_train=10000, num_eval=5000,
                     num_variance_estimate=10000, prune_threshold=0.05,
                     seed=0):
    """FactorVAE score: how often the code that varies least when one factor
    is held fixed identifies that factor, by a majority-vote classifier.

    ```none
    s_k          = std of code k over num_variance_estimate random examples
    active       = {k : s_k >= prune_threshold and s_k > 0}   (collapsed codes out)
    one vote     : pick a factor j uniformly; draw batch_size examples
                   with factor j fixed to one random value;
                   d = argmin_{k in active} Var_batch(c_k) / s_k²   → vote (j, d)
    classifier   : code d -> the factor with most training votes for d
    accuracy     = Σ_d votes[classifier(d), d] / Σ votes
    ```

    The codes are normalised by their global std (so the score does not
    depend on their scales). As disentanglement_lib's `compute_factor_vae`
    (its configs: `batch_size=64`, `num_train=10000`, `num_eval=5000`,
    `num_variance_estimate=10000`, `prune_dims.threshold=0.05`). NumPy
    only.

    The sampler protocol: `sampler.sample_factors(num, rng)` -> `(num,
    num_factors)` integer factors and
    `sampler.sample_observations_from_factors(factors, rng)` -> the
    observations of those factors, `rng` a `np.random.Generator`
    (disentanglement_lib's `GroundTruthData` has the same two methods
    with a `np.random.RandomState`); `keras_vae.datasets.Shapes` is
    such a sampler. `representation_fn(observations)` -> `(num,
    num_codes)` codes, e.g. `lambda x: vae.posterior_mode(x)`.

    Differences from disentanglement_lib: randomness comes from
    `np.random.default_rng(seed)` (not a `RandomState`), so numbers differ
    for the same seed; all votes' factors are drawn up front and the
    observations rendered and represented in chunks of about 2,048
    (faster, the same distribution); a code with zero global variance is
    always pruned (disentanglement_lib keeps it at threshold 0 and divides
    by zero); `num_active_dims` counts the active codes (disentanglement_lib
    reports the number of all codes).

    Args:
        representation_fn: callable, observations -> `(num, num_codes)`
            codes.
        sampler: the ground-truth sampler (above).
        batch_size: int >= 2, examples per vote.
        num_train: positive int, votes that train the classifier.
        num_eval: positive int, votes it is evaluated on.
        num_variance_estimate: int >= 2, examples for the global stds.
        prune_threshold: float >= 0, codes with a global std below it are
            collapsed and left out.
        seed: int or None, for `np.random.default_rng`.

    Returns:
        dict: `"train_accuracy"`, `"eval_accuracy"` (floats in [0, 1]; 0
        when every code is collapsed) and `"num_active_dims"` (int).

    Raises:
        ValueError: a bad option or sampler, non-integer factors or
            non-finite codes from them.

    Example:

    ```python
    shapes = keras_vae.datasets.Shapes(image_size=32)
    scores = keras_vae.disentanglement.factor_vae_score(
        lambda x: vae.posterior_mode(x), shapes, num_train=1000,
        num_eval=500, num_variance_estimate=1000)
    ```

    References: Kim & Mnih 2018, "Disentangling by Factorising";
    Locatello et al. 2019 (disentanglement_lib).
    """
    representation_fn = _sampling.check_representation_fn(representation_fn)
    sampler = _sampling.check_sampler(sampler)
    batch_size, num_train, num_eval, seed = _sampling.check_common(
        batch_size, num_train, num_eval, seed)
    num_variance_estimate = _inputs.check_int(
        "num_variance_estimate", num_variance_estimate, 2)
    prune_threshold = v.check_float("prune_threshold", prune_threshold,
                                    minimum=0.0)
    rng = np.random.default_rng(seed)
    metric = "factor_vae_score"

    factors = _sampling.sample_factors(sampler, num_variance_estimate, rng,
                                       metric)
    codes = _sampling.represent(sampler, representation_fn, factors[None],
                                rng, metric)[0]
    variances = np.var(codes, axis=0, ddof=1)
    scales = np.sqrt(variances)
    active = np.flatnonzero((scales >= prune_threshold) & (variances > 0))
    if active.size == 0:
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0,
                "num_active_dims": 0}
    num_factors = factors.shape[1]

    def votes(num_points):
        labels, groups = _fixed_factor_groups(
            sampler, num_points, batch_size, num_factors, rng, metric)
        group_codes = _sampling.represent(sampler, representation_fn, groups,
                                          rng, metric)
        local = np.var(group_codes, axis=1, ddof=1)  # (num_points, K)
        argmin = active[np.argmin(local[:, active] / variances[active],
                                  axis=1)]
        counts = np.zeros((num_factors, codes.shape[1]), dtype=np.int64)
        np.add.at(counts, (labels, argmin), 1)
        return counts

    train_votes = votes(num_train)
    classifier = np.argmax(train_votes, axis=0)  # code -> factor
    columns = np.arange(train_votes.shape[1])

    def accuracy(counts):
        return float(counts[classifier, columns].sum() / counts.sum())

    eval_votes = votes(num_eval)
    return {"train_accuracy": accuracy(train_votes),
            "eval_accuracy": accuracy(eval_votes),
            "num_active_dims": int(active.size)}


def _fixed_factor_groups(sampler, num_points, batch_size, num_factors, rng,
                         metric):
    """`num_points` labels j (uniform) and factor groups `(num_points,
    batch_size, F)` in which factor j of each group is held at the value
    of its first example."""
    labels = rng.integers(num_factors, size=num_points)
    factors = _sampling.sample_factors(
        sampler, num_points * batch_size, rng, metric).reshape(
            num_points, batch_size, num_factors)
    points = np.arange(num_points)
    factors[points, :, labels] = factors[points, 0, labels][:, None]
    return labels, factors
