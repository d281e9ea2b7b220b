"""The Separated Attribute Predictability (SAP) score of Kumar et al.
(2018)."""

import numpy as np

from keras_vae import _validation as v
from keras_vae.disentanglement import _inputs

# Below this code variance a code counts as constant (R² = 0), as
# disentanglement_lib.
_MIN_VARIANCE = 1e-12


def sap(codes, factors, continuous_factors=False, codes_test=None,
        factors_test=None, test_size=1 / 3, seed=0):
    """SAP score: the mean gap between the two codes that predict a factor
    best, each code used alone.

    ```none
    S[k, j] = discrete factors: test accuracy of a linear classifier of
                y_j from code k alone (LinearSVC, C = 0.01, balanced
                class weights, fitted on the training split)
              continuous factors: R² = corr(c_k, y_j)², on all examples
                (0 when var(c_k) <= 1e-12)
    SAP     = (1 / J) Σ_j (S[k_1(j), j] - S[k_2(j), j])
              k_1(j), k_2(j): the best and second best code for factor j
    ```

    High when each factor is predictable from one code and much less
    from any other. As disentanglement_lib's `compute_sap` (LinearSVC
    for discrete factors, R² for continuous ones; its configs use
    `continuous_factors=False`). Needs scikit-learn
    (`pip install "keras_vae[disentanglement]"`).

    Differences from disentanglement_lib: it takes arrays, and holds out
    `test_size` of them (a random split drawn with `seed`) for the
    discrete scores unless `codes_test`/`factors_test` are given, where
    disentanglement_lib samples 10,000 training and 5,000 test points;
    R² for continuous factors uses all N examples as it uses its whole
    training sample; LinearSVC runs with sklearn's current defaults
    (`dual="auto"`, which picks the primal solver for one feature, where
    older sklearn solved the dual: the same problem, solved to sklearn's
    tolerance) and `random_state=seed`; a factor that takes one value in
    the training split is predicted as that value; constant factors are
    an error.

    Args:
        codes: `(N, num_codes)` array of the representation, num_codes
            >= 2.
        factors: `(N, num_factors)` array of the factors, each taking at
            least two values: integer labels (integer-valued floats are
            accepted) unless `continuous_factors`.
        continuous_factors: bool; True scores the factors by R² (any real
            values), False by classification accuracy.
        codes_test, factors_test: optional test set (both or neither) for
            the discrete scores; without them `test_size` of the examples
            are held out.
        test_size: float in (0, 1), the fraction held out (1/3:
            disentanglement_lib's 10,000 / 5,000 ratio).
        seed: int or None, the split and LinearSVC's `random_state`.

    Returns:
        The SAP score, a float in [0, 1].

    Raises:
        ValueError: bad arrays (as for `mig`), too few examples for the
            split, or a bad option.

    Example:

    ```python
    keras_vae.disentanglement.sap(codes, factors)
    keras_vae.disentanglement.sap(codes, positions, continuous_factors=True)
    ```

    References: Kumar et al. 2018, "Variational Inference of Disentangled
    Latent Concepts from Unlabeled Observations"; Locatello et al. 2019
    (disentanglement_lib).
    """
    continuous_factors = v.check_bool("continuous_factors",
                                      continuous_factors)
    seed = v.check_seed("seed", seed)
    if continuous_factors:
        if codes_test is not None or factors_test is not None:
            raise v.invalid(
                "codes_test" if codes_test is not None else "factors_test",
                "None with continuous_factors=True (R² uses all examples)",
                "an array")
        codes, factors = _inputs.codes_and_factors(
            codes, factors, "sap", discrete=False)
        _inputs.check_varies("factors", factors)
        scores = _r_squared(codes, factors)
    else:
        codes, factors, codes_test, factors_test = _inputs.train_test(
            codes, factors, codes_test, factors_test, test_size, seed, "sap")
        scores = _accuracy(codes, factors, codes_test, factors_test, seed)
    top_two = np.sort(scores, axis=0)[::-1][:2]
    return float(np.mean(top_two[0] - top_two[1]))


def _r_squared(codes, factors):
    """`(num_codes, num_factors)` squared correlations (np.cov, ddof=1)."""
    scores = np.zeros((codes.shape[1], factors.shape[1]))
    for k in range(codes.shape[1]):
        for j in range(factors.shape[1]):
            cov = np.cov(codes[:, k], factors[:, j], ddof=1)
            if cov[0, 0] > _MIN_VARIANCE:
                scores[k, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
    return scores


def _accuracy(codes, factors, codes_test, factors_test, seed):
    """`(num_codes, num_factors)` test accuracies of one-code LinearSVCs."""
    svm = _inputs.sklearn("sap", "svm")
    scores = np.zeros((codes.shape[1], factors.shape[1]))
    for j in range(factors.shape[1]):
        y, y_test = factors[:, j], factors_test[:, j]
        if np.all(y == y[0]):  # one class in training: predict it
            scores[:, j] = np.mean(y_test == y[0])
            continue
        for k in range(codes.shape[1]):
            classifier = svm.LinearSVC(C=0.01, class_weight="balanced",
                                       random_state=seed)
            classifier.fit(codes[:, k:k + 1], y)
            predicted = classifier.predict(codes_test[:, k:k + 1])
            scores[k, j] = np.mean(predicted == y_test)
    return scores
