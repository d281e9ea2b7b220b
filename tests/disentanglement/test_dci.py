"""keras_vae.disentanglement.dci: the D/C entropies against closed forms
and a re-derivation with math.log, the whole metric against the same
gradient boosted trees scored by the test's own formulas, and the gap
between factor-aligned and rotated codes."""

import math

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from keras_vae.disentanglement import dci
from keras_vae.disentanglement.dci import _completeness, _disentanglement
from tests.disentanglement.toy import (
    noisy_codes,
    random_factors,
    random_rotation,
)

SIZES = (4, 3, 5)
FAST = {"num_estimators": 10}  # fewer boosting stages: fast, still exact


def one_minus_entropy_by_hand(weights, base):
    total = sum(w + 1e-11 for w in weights)
    return 1.0 + sum((w + 1e-11) / total * math.log((w + 1e-11) / total)
                     for w in weights) / math.log(base)


def dc_by_hand(importance):
    """D and C of Eastwood & Williams with disentanglement_lib's weights."""
    codes, factors = importance.shape
    total = importance.sum()
    d = sum(one_minus_entropy_by_hand(importance[k], factors)
            * importance[k].sum() / total for k in range(codes))
    c = sum(one_minus_entropy_by_hand(importance[:, j], codes)
            * importance[:, j].sum() / total for j in range(factors))
    return d, c


def test_entropy_scores_closed_forms():
    # One factor per code: D = C = 1 (up to the 1e-11 smoothing).
    assert _disentanglement(np.eye(3)) == pytest.approx(1.0, abs=1e-8)
    assert _completeness(np.eye(3)) == pytest.approx(1.0, abs=1e-8)
    # Every code equally important for every factor: D = C = 0.
    assert _disentanglement(np.ones((3, 4))) == pytest.approx(0.0, abs=1e-12)
    assert _completeness(np.ones((3, 4))) == pytest.approx(0.0, abs=1e-12)
    # Two codes share factor 0 equally, code 2 holds factor 1 (J = K-1 = 2
    # factors, 3 codes): D = 1, C = (1/2)·(1 - log 2 / log 3) + (1/2)·1.
    importance = np.array([[0.5, 0.0], [0.5, 0.0], [0.0, 1.0]])
    assert _disentanglement(importance) == pytest.approx(1.0, abs=1e-8)
    assert _completeness(importance) == pytest.approx(
        0.5 * (1 - math.log(2) / math.log(3)) + 0.5, abs=1e-8)
    # Nothing important: equal weights (disentanglement_lib's rule).
    assert _disentanglement(np.zeros((2, 2))) == pytest.approx(0.0, abs=1e-9)


def test_entropy_scores_equal_the_formula_by_hand():
    importance = np.random.default_rng(0).gamma(0.5, size=(5, 3))
    importance[1, 2] = 0.0
    d, c = dc_by_hand(importance)
    assert _disentanglement(importance) == pytest.approx(d, rel=1e-12)
    assert _completeness(importance) == pytest.approx(c, rel=1e-12)


def test_dci_equals_trees_scored_by_hand():
    factors = random_factors(300, SIZES, seed=0)
    codes = noisy_codes(factors, noise=0.7) @ random_rotation(3)[:, :3]
    factors_test = random_factors(100, SIZES, seed=10)
    codes_test = noisy_codes(factors_test, noise=0.7, seed=11) @ (
        random_rotation(3)[:, :3])
    importance = np.zeros((3, 3))
    train, test = [], []
    for j in range(3):
        trees = GradientBoostingClassifier(n_estimators=10, random_state=4)
        trees.fit(codes, factors[:, j])
        importance[:, j] = trees.feature_importances_
        train.append(np.mean(trees.predict(codes) == factors[:, j]))
        test.append(np.mean(trees.predict(codes_test) == factors_test[:, j]))
    d, c = dc_by_hand(importance)
    scores = dci(codes, factors, codes_test, factors_test, seed=4, **FAST)
    assert scores == pytest.approx({
        "disentanglement": d, "completeness": c,
        "informativeness_train": np.mean(train),
        "informativeness_test": np.mean(test)}, rel=1e-12)


def test_dci_split_is_seeded_and_sized():
    factors = random_factors(90, SIZES)
    codes = noisy_codes(factors, noise=0.3)
    a = dci(codes, factors, seed=1, **FAST)
    assert dci(codes, factors, seed=1, **FAST) == a
    # test_size=1/3 holds out 30 examples, a random third: the same as
    # passing that split explicitly.
    order = np.random.default_rng(1).permutation(90)
    explicit = dci(codes[order[30:]], factors[order[30:]],
                   codes[order[:30]], factors[order[:30]], seed=1, **FAST)
    assert explicit == a


@pytest.mark.parametrize("model, aligned_min, rotated_max", [
    ("gbt", 0.9, 0.5),       # D observed 1.00 vs 0.17
    ("logistic", 0.8, 0.5),  # D observed 0.90 vs 0.07
])
def test_dci_aligned_codes_near_one_rotated_codes_clearly_lower(
        model, aligned_min, rotated_max):
    factors = random_factors(600, SIZES)
    codes = noisy_codes(factors, noise=0.1)
    aligned = dci(codes, factors, model=model, **FAST)
    rotated = dci(codes @ random_rotation(3), factors, model=model, **FAST)
    assert aligned["disentanglement"] > aligned_min, aligned
    assert aligned["completeness"] > aligned_min, aligned
    assert aligned["informativeness_test"] > 0.95, aligned
    assert rotated["disentanglement"] < rotated_max, rotated
    assert rotated["completeness"] < rotated_max, rotated


def test_dci_factor_with_one_value_in_the_training_split():
    # Factor 1 is 1 for one example only, which the split holds out: in
    # training the factor is constant, so it is predicted as 0 and no code
    # is important for it (sklearn would refuse to fit one class).
    rng = np.random.default_rng(0)
    factors = np.c_[np.arange(30) % 2, np.zeros(30, int)]
    factors[0, 1] = 1
    codes = np.c_[factors[:, 0] + 0.1 * rng.normal(size=30),
                  rng.normal(size=30)]
    seed = next(s for s in range(100)
                if 0 in np.random.default_rng(s).permutation(30)[:10])
    scores = dci(codes, factors, seed=seed, **FAST)
    # Every importance is for factor 0: each code is perfectly disentangled.
    assert scores["disentanglement"] == pytest.approx(1.0, abs=1e-8)
    assert scores["informativeness_train"] == pytest.approx(1.0)  # 1 and 1
    assert scores["informativeness_test"] == pytest.approx((1.0 + 0.9) / 2)


@pytest.mark.parametrize("kwargs, argument, match", [
    ({"factors": np.c_[np.arange(30) % 3]}, "factors", r"at least 2 factors"),
    ({"codes_test": np.zeros((5, 2))}, "factors_test", r"both or neither"),
    ({"codes_test": np.zeros((5, 3)), "factors_test": np.zeros((5, 2))},
     "codes_test", r"as many columns as `codes` \(2\)"),
    ({"codes_test": np.zeros((5, 2)), "factors_test": np.full((5, 2), 0.5)},
     "factors_test", r"discrete factors"),
    ({"test_size": 1.0}, "test_size", r"\(0, 1\)"),
    ({"test_size": 0.01}, "codes", r"enough examples for a test split"),
    ({"model": "forest"}, "model", r"\['gbt', 'logistic'\]"),
    ({"num_estimators": 0}, "num_estimators", r"positive integer"),
    ({"seed": 1.5}, "seed", r"an int or None"),
])
def test_dci_bad_input_names_the_argument(kwargs, argument, match):
    args = {"codes": np.random.default_rng(0).normal(size=(30, 2)),
            "factors": np.c_[np.arange(30) % 3, np.arange(30) % 2]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"argument `{argument}`.*{match}"):
        dci(**args)
