"""Disentanglement, Completeness and Informativeness (DCI) of Eastwood &
Williams (2018)."""

import numpy as np

from keras_vae import _validation as v
from keras_vae.disentanglement import _inputs

MODELS = ("gbt", "logistic")  # the importance models `dci` offers

# Added to every importance before the entropies, as disentanglement_lib
# (it keeps log(0) out of an all-zero row or column).
_EPSILON = 1e-11


def dci(codes, factors, codes_test=None, factors_test=None, test_size=1 / 3,
        model="gbt", num_estimators=100, seed=0):
    """Disentanglement, completeness and informativeness of a
    representation, from the importance of each code for predicting each
    factor.

    ```none
    R[k, j]   = importance of code k in the classifier of factor j (>= 0)
    D_k       = 1 - H_J(R[k, :] / Σ_j R[k, j])      H_J: entropy in base J
    D         = Σ_k ρ_k D_k,    ρ_k = Σ_j R[k, j] / Σ_kj R[k, j]
    C_j       = 1 - H_K(R[:, j] / Σ_k R[k, j])      H_K: entropy in base K
    C         = Σ_j ρ'_j C_j,   ρ'_j = Σ_k R[k, j] / Σ_kj R[k, j]
    I_train, I_test = the classifiers' accuracy, averaged over factors
    (R + 1e-11 in the entropies, as disentanglement_lib)
    ```

    D is 1 when each code matters for one factor only, C is 1 when each
    factor is predicted from one code only, I is how well the codes
    predict the factors at all. With `model="gbt"` (the default) this is
    disentanglement_lib's `compute_dci`: one
    `sklearn.ensemble.GradientBoostingClassifier` per factor, fitted on the
    training codes, R = its `feature_importances_`, informativeness = its
    accuracy on the training and test sets. The trees fit one regression
    tree per class and stage, so factors with many values are slow (a
    minute for 2,000 training examples of dSprites' factor grid on 2
    cores). `model="logistic"` is a fast linear alternative (0.2 s there):
    one `LogisticRegression` per factor on the standardised codes, R[k, j]
    = mean over classes of |coefficient|, each column normalised to sum to
    1 as the trees' importances do; its scores are its own (informativeness
    is then linear predictability) and not comparable with the trees'.
    Needs scikit-learn (`pip install "keras_vae[disentanglement]"`).

    Differences from disentanglement_lib: it takes arrays, and splits them
    (`test_size`, a random split drawn with `seed`) unless `codes_test` and
    `factors_test` are given, where disentanglement_lib samples 10,000
    training and 5,000 test points; the trees get `random_state=seed`
    (disentanglement_lib leaves it unset, so its feature ties are broken
    differently on each run) and `n_estimators=num_estimators` (100, the
    sklearn default it uses); a factor that takes one value in the
    training split is predicted as that value with zero importances
    (sklearn refuses to fit it); constant factors are an error.

    Args:
        codes: `(N, num_codes)` array of the representation, num_codes
            >= 2.
        factors: `(N, num_factors)` integer factor labels (integer-valued
            floats are accepted), num_factors >= 2, each taking at least
            two values.
        codes_test, factors_test: optional test set of the same widths
            (both or neither); without them `test_size` of the examples are
            held out.
        test_size: float in (0, 1), the fraction held out when no test set
            is given (1/3: disentanglement_lib's 10,000 / 5,000 ratio).
        model: `"gbt"` (gradient boosted trees, disentanglement_lib's) or
            `"logistic"`.
        num_estimators: positive int, boosting stages of `"gbt"` (fewer is
            faster and rougher).
        seed: int or None, the split and the trees' `random_state`.

    Returns:
        dict of floats: `"disentanglement"`, `"completeness"` (in [0, 1]),
        `"informativeness_train"`, `"informativeness_test"` (accuracies).

    Raises:
        ValueError: bad arrays (as for `mig`), fewer than 2 factors, too
            few examples for the split, or a bad option.

    Example:

    ```python
    scores = keras_vae.disentanglement.dci(codes, factors, model="logistic")
    scores["disentanglement"], scores["informativeness_test"]
    ```

    References: Eastwood & Williams 2018, "A Framework for the Quantitative
    Evaluation of Disentangled Representations"; Locatello et al. 2019
    (disentanglement_lib).
    """
    model = v.check_choice("model", model, MODELS)
    num_estimators = v.check_positive_int("num_estimators", num_estimators)
    seed = v.check_seed("seed", seed)
    codes, factors, codes_test, factors_test = _inputs.train_test(
        codes, factors, codes_test, factors_test, test_size, seed, "dci")
    if factors.shape[1] < 2:
        raise _inputs.invalid_array(
            "factors", "at least 2 factors for dci (its disentanglement is "
            "an entropy in base num_factors)",
            f"factors.shape={factors.shape}")
    importance, train_accuracy, test_accuracy = _importance(
        codes, factors, codes_test, factors_test, model, num_estimators, seed)
    return {
        "disentanglement": _disentanglement(importance),
        "completeness": _completeness(importance),
        "informativeness_train": train_accuracy,
        "informativeness_test": test_accuracy,
    }


def _importance(codes, factors, codes_test, factors_test, model,
                num_estimators, seed):
    """`(num_codes, num_factors)` importances and the mean accuracies."""
    if model == "gbt":
        ensemble = _inputs.sklearn("dci", "ensemble")

        def make():
            return ensemble.GradientBoostingClassifier(
                n_estimators=num_estimators, random_state=seed)
    else:
        linear_model = _inputs.sklearn("dci", "linear_model")
        mean, std = codes.mean(axis=0), codes.std(axis=0)
        std[std == 0] = 1.0
        codes, codes_test = (codes - mean) / std, (codes_test - mean) / std

        def make():
            return linear_model.LogisticRegression(max_iter=1000)
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    train_accuracy, test_accuracy = [], []
    for j in range(factors.shape[1]):
        y, y_test = factors[:, j], factors_test[:, j]
        if np.all(y == y[0]):  # one class: predict it, no code matters
            train_accuracy.append(np.mean(y == y[0]))
            test_accuracy.append(np.mean(y_test == y[0]))
            continue
        classifier = make().fit(codes, y)
        if model == "gbt":
            importance[:, j] = np.abs(classifier.feature_importances_)
        else:
            weight = np.abs(classifier.coef_).mean(axis=0)
            importance[:, j] = weight / max(weight.sum(), 1e-300)
        train_accuracy.append(np.mean(classifier.predict(codes) == y))
        test_accuracy.append(np.mean(classifier.predict(codes_test) == y_test))
    return (importance, float(np.mean(train_accuracy)),
            float(np.mean(test_accuracy)))


def _one_minus_entropy(weights, base):
    """1 - entropy (in `base`) of each column of `weights` normalised to a
    distribution (`scipy.stats.entropy` of `weights + 1e-11`)."""
    p = weights + _EPSILON
    p = p / p.sum(axis=0, keepdims=True)
    return 1.0 + np.sum(p * np.log(p), axis=0) / np.log(base)


def _weights(importance, axis):
    total = importance.sum()
    if total == 0.0:  # nothing is important: equal weights
        importance, total = np.ones_like(importance), importance.size
    return importance.sum(axis=axis) / total


def _disentanglement(importance):
    """D of an importance matrix `(num_codes, num_factors)` (see `dci`)."""
    importance = np.asarray(importance, dtype=np.float64)
    per_code = _one_minus_entropy(importance.T, importance.shape[1])
    return float(np.sum(per_code * _weights(importance, axis=1)))


def _completeness(importance):
    """C of an importance matrix `(num_codes, num_factors)` (see `dci`)."""
    importance = np.asarray(importance, dtype=np.float64)
    per_factor = _one_minus_entropy(importance, importance.shape[0])
    return float(np.sum(per_factor * _weights(importance, axis=0)))
