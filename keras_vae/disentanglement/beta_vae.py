"""The β-VAE disentanglement score of Higgins et al. (2017)."""

import numpy as np

from keras_vae import _validation as v
from keras_vae.disentanglement import _inputs, _sampling


def beta_vae_score(representation_fn, sampler, batch_size=64,
                   num_train=10000, num_eval=5000, max_iter=100, seed=0):
    """β-VAE score: the accuracy of a linear classifier that tells, from how
    much each code changes between pairs of examples, which factor the
    pairs share.

    ```none
    one point : pick a factor j uniformly; draw batch_size pairs (x, x')
                whose factors are independent except factor j, equal
                within each pair;
                feature = (1 / batch_size) Σ_pairs |c(x) - c(x')|   (num_codes,)
                label   = j
    score     : LogisticRegression fitted on num_train points; its
                accuracy on them and on num_eval new points
    ```

    As disentanglement_lib's `compute_beta_vae_sklearn` (its configs:
    `batch_size=64`, `num_train=10000`, `num_eval=5000`;
    `sklearn.linear_model.LogisticRegression` with sklearn's defaults;
    on codes of large scale its lbfgs solver may stop at `max_iter`
    iterations with a ConvergenceWarning, as it would there).
    The sampler protocol and `representation_fn` are those of
    `factor_vae_score`. Needs scikit-learn
    (`pip install "keras_vae[disentanglement]"`).

    Differences from disentanglement_lib: randomness comes from
    `np.random.default_rng(seed)` (not a `RandomState`), so numbers differ
    for the same seed; the regression gets `random_state=seed` (its lbfgs
    solver does not use it); all points' factors are drawn up front and
    the observations rendered and represented in chunks of about 2,048
    (faster, the same distribution); the defaults of `LogisticRegression`
    are today's sklearn's (lbfgs, C = 1, `max_iter=100`; multinomial for
    more than two factors, where the sklearn of disentanglement_lib's
    time fitted one-vs-rest with liblinear).

    Args:
        representation_fn: callable, observations -> `(num, num_codes)`
            codes.
        sampler: the ground-truth sampler, with at least 2 factors.
        batch_size: int >= 2, pairs per point.
        num_train: positive int, points the classifier is fitted on.
        num_eval: positive int, points it is evaluated on.
        max_iter: positive int, the regression's iterations (sklearn's
            default 100; more for codes of large scale).
        seed: int or None, for `np.random.default_rng`.

    Returns:
        dict of floats: `"train_accuracy"`, `"eval_accuracy"` (in [0, 1]).

    Raises:
        ValueError: a bad option or sampler, non-integer factors or
            non-finite codes from them.

    Example:

    ```python
    scores = keras_vae.disentanglement.beta_vae_score(
        lambda x: vae.posterior_mode(x), keras_vae.datasets.Shapes(32),
        num_train=1000, num_eval=500)
    ```

    References: Higgins et al. 2017, "β-VAE: Learning Basic Visual
    Concepts with a Constrained Variational Framework"; Locatello et al.
    2019 (disentanglement_lib).
    """
    representation_fn = _sampling.check_representation_fn(representation_fn)
    sampler = _sampling.check_sampler(sampler)
    batch_size, num_train, num_eval, seed = _sampling.check_common(
        batch_size, num_train, num_eval, seed)
    max_iter = v.check_positive_int("max_iter", max_iter)
    linear_model = _inputs.sklearn("beta_vae_score", "linear_model")
    rng = np.random.default_rng(seed)

    train_points, train_labels = _points(
        representation_fn, sampler, batch_size, num_train, rng)
    if len(np.unique(train_labels)) < 2:
        # A few points may all share one label: nothing to tell apart
        # (and sklearn refuses to fit one class).
        raise _inputs.invalid_array(
            "num_train", "enough points to draw at least two factors",
            f"num_train={num_train}")
    model = linear_model.LogisticRegression(max_iter=max_iter,
                                            random_state=seed)
    model.fit(train_points, train_labels)
    train_accuracy = float(np.mean(model.predict(train_points)
                                   == train_labels))
    eval_points, eval_labels = _points(
        representation_fn, sampler, batch_size, num_eval, rng)
    eval_accuracy = float(np.mean(model.predict(eval_points) == eval_labels))
    return {"train_accuracy": train_accuracy, "eval_accuracy": eval_accuracy}


def _points(representation_fn, sampler, batch_size, num_points, rng):
    """`(num_points, num_codes)` features and `(num_points,)` labels."""
    metric = "beta_vae_score"
    first = _sampling.sample_factors(sampler, num_points * batch_size, rng,
                                     metric)
    num_factors = first.shape[1]
    if num_factors < 2:
        raise _inputs.invalid_array(
            "sampler", f"at least 2 factors for {metric}",
            f"factors of shape {first.shape}")
    labels = rng.integers(num_factors, size=num_points)
    second = _sampling.sample_factors(sampler, num_points * batch_size, rng,
                                      metric)
    first = first.reshape(num_points, batch_size, num_factors)
    second = second.reshape(num_points, batch_size, num_factors)
    points = np.arange(num_points)
    second[points, :, labels] = first[points, :, labels]
    # One call per chunk holds both halves of its pairs.
    pairs = np.concatenate([first, second], axis=1)
    codes = _sampling.represent(sampler, representation_fn, pairs, rng,
                                metric)
    features = np.mean(np.abs(codes[:, :batch_size] - codes[:, batch_size:]),
                       axis=1)
    return features, labels
