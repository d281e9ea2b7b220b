"""keras_vae.disentanglement.sap: R² of continuous factors against sums
written out by hand and a closed form, discrete scores against one-code
LinearSVCs fitted here with the test's own gap, and the gap between
factor-aligned and rotated codes."""

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from keras_vae.disentanglement import sap
from tests.disentanglement.toy import (
    full_factorial,
    noisy_codes,
    random_factors,
    random_rotation,
)

SIZES = (4, 3, 5)


def gap_of_top_two(scores):
    """Mean over factors (columns) of best minus second best code."""
    gaps = []
    for column in scores.T:
        best, second = sorted(column, reverse=True)[:2]
        gaps.append(best - second)
    return float(np.mean(gaps))


def r_squared_by_hand(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) ** 2 / ((a @ a) * (b @ b)))


def test_sap_continuous_equals_r_squared_by_hand():
    rng = np.random.default_rng(0)
    factors = rng.uniform(size=(200, 3))  # real-valued factors
    codes = factors @ rng.normal(size=(3, 4)) + rng.normal(size=(200, 4))
    scores = np.array([[r_squared_by_hand(codes[:, k], factors[:, j])
                        for j in range(3)] for k in range(4)])
    assert sap(codes, factors, continuous_factors=True) == pytest.approx(
        gap_of_top_two(scores), rel=1e-12)


def test_sap_continuous_closed_forms():
    # Exactly uncorrelated factors (a full factorial): codes equal to them
    # give R² = the identity, SAP = 1; a copy of factor 0 halves it.
    factors = full_factorial((4, 6)).astype(float)
    assert sap(factors, factors, continuous_factors=True) == pytest.approx(1)
    codes = np.c_[factors[:, 0], factors[:, 0], factors[:, 1]]
    assert sap(codes, factors, continuous_factors=True) == pytest.approx(0.5)
    # A constant code scores 0 (not NaN).
    codes = np.c_[factors, np.ones(len(factors))]
    assert sap(codes, factors, continuous_factors=True) == pytest.approx(1)


def test_sap_discrete_equals_one_code_classifiers_scored_here():
    factors = random_factors(240, SIZES, seed=0)
    codes = noisy_codes(factors, noise=0.5) @ random_rotation(3)
    factors_test = random_factors(120, SIZES, seed=1)
    codes_test = noisy_codes(factors_test, noise=0.5, seed=2) @ (
        random_rotation(3))
    scores = np.zeros((3, 3))
    for k in range(3):
        for j in range(3):
            svm = LinearSVC(C=0.01, class_weight="balanced", random_state=7)
            svm.fit(codes[:, [k]], factors[:, j])
            scores[k, j] = np.mean(
                svm.predict(codes_test[:, [k]]) == factors_test[:, j])
    value = sap(codes, factors, codes_test=codes_test,
                factors_test=factors_test, seed=7)
    assert value == pytest.approx(gap_of_top_two(scores), rel=1e-12)


def test_sap_discrete_split_is_seeded():
    factors = random_factors(90, SIZES)
    codes = noisy_codes(factors)
    order = np.random.default_rng(3).permutation(90)
    test, train = order[:30], order[30:]
    assert sap(codes, factors, seed=3) == sap(
        codes[train], factors[train], codes_test=codes[test],
        factors_test=factors[test], seed=3)


def test_sap_aligned_codes_score_higher_than_rotated_codes():
    factors = random_factors(600, SIZES)
    codes = noisy_codes(factors, noise=0.1)
    rotation = random_rotation(3)
    # Discrete: one code and a linear classifier tell apart only some of a
    # factor's 3-5 values, so even aligned codes stay far below 1.
    aligned, rotated = sap(codes, factors), sap(codes @ rotation, factors)
    assert aligned > 0.3 and rotated < 0.15, (aligned, rotated)  # 0.38, 0.07
    # Binary factors: the aligned code classifies its factor perfectly and
    # the others at chance (balanced classes), so SAP ≈ 1 - 1/2.
    binary = random_factors(600, (2, 2, 2))
    binary_codes = noisy_codes(binary, noise=0.1)
    assert sap(binary_codes, binary) == pytest.approx(0.5, abs=0.1)  # 0.55
    assert sap(binary_codes @ rotation, binary) < 0.3  # 0.16
    # Continuous scores (R²) reach 1.
    aligned = sap(codes, factors, continuous_factors=True)
    rotated = sap(codes @ rotation, factors, continuous_factors=True)
    assert aligned > 0.95 and rotated < 0.4, (aligned, rotated)  # 0.99, 0.2


@pytest.mark.parametrize("kwargs, argument, match", [
    ({"factors": np.zeros((29, 2))}, "factors", r"as many rows"),
    ({"factors": np.full((30, 2), 0.5)}, "factors", r"discrete factors"),
    ({"factors": np.c_[np.arange(30) % 3, np.ones(30)]}, "factors",
     r"at least two values"),
    ({"codes": np.full((30, 2), np.inf)}, "codes", r"no NaN or inf"),
    ({"codes": np.zeros((30, 1))}, "codes", r"at least 2 code dimensions"),
    ({"codes": np.zeros((2, 2)), "factors": np.c_[[0, 1], [1, 0]]},
     "codes", r"at least 1 test and 2 training"),
    ({"continuous_factors": 1}, "continuous_factors", r"a bool"),
    ({"continuous_factors": True, "codes_test": np.zeros((3, 2))},
     "codes_test", r"None with continuous_factors=True"),
    ({"factors_test": np.zeros((3, 2))}, "codes_test", r"both or neither"),
])
def test_sap_bad_input_names_the_argument(kwargs, argument, match):
    args = {"codes": np.random.default_rng(0).normal(size=(30, 2)),
            "factors": np.c_[np.arange(30) % 3, np.arange(30) % 2]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"argument `{argument}`.*{match}"):
        sap(**args)


def test_sap_continuous_accepts_real_factors_discrete_does_not():
    rng = np.random.default_rng(0)
    factors = rng.uniform(size=(30, 2))
    codes = factors + 0.01 * rng.normal(size=(30, 2))
    assert sap(codes, factors, continuous_factors=True) > 0.9
    with pytest.raises(ValueError, match=r"`factors`.*non-integer"):
        sap(codes, factors)
