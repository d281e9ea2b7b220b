"""keras_vae.disentanglement.mig: against a re-implementation that bins
with its own arithmetic and counts the mutual information with NumPy (no
sklearn), closed forms on exactly independent factors, and the gap between
factor-aligned and rotated codes."""

import sys

import numpy as np
import pytest

from keras_vae.disentanglement import mig
from tests.disentanglement.toy import (
    full_factorial,
    noisy_codes,
    random_factors,
    random_rotation,
)

SIZES = (4, 5, 3)


def bins_by_hand(column, num_bins):
    """Equal-width bins over [min, max], numbered 1 ... num_bins."""
    low, high = column.min(), column.max()
    if high == low:
        return np.ones(len(column), dtype=int)
    index = np.floor((column - low) / ((high - low) / num_bins))
    return np.clip(index, 0, num_bins - 1).astype(int) + 1


def mutual_information_by_counting(a, b):
    """I(a; b) in nats from the joint histogram of two label arrays."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    seen = joint > 0
    return float(np.sum(joint[seen] * np.log(joint[seen] / outer[seen])))


def mig_by_hand(codes, factors, num_bins):
    gaps = []
    for j in range(factors.shape[1]):
        info = sorted((mutual_information_by_counting(
            bins_by_hand(codes[:, k], num_bins), factors[:, j])
            for k in range(codes.shape[1])), reverse=True)
        entropy = mutual_information_by_counting(factors[:, j],
                                                 factors[:, j])
        gaps.append((info[0] - info[1]) / entropy)
    return float(np.mean(gaps))


@pytest.mark.parametrize("num_bins", [2, 7, 20])
def test_mig_equals_counting_reimplementation(num_bins):
    factors = random_factors(500, SIZES)
    # Codes that mix the factors partly, with a useless fourth code.
    mixing = np.array([[1.0, 0.3, 0.0, 0.0], [0.2, 1.0, 0.5, 0.0],
                       [0.0, 0.0, 1.0, 0.0]])
    codes = noisy_codes(factors, noise=0.5) @ mixing
    codes[:, 3] = np.random.default_rng(5).normal(size=len(codes))
    expected = mig_by_hand(codes, factors, num_bins)
    np.testing.assert_allclose(mig(codes, factors, num_bins=num_bins),
                               expected, rtol=1e-10, atol=1e-12)
    assert 0.0 < expected < 1.0


def test_mig_closed_forms_on_independent_factors():
    # A full factorial design: the factors are exactly independent, so a
    # code equal to one factor has zero information about the others.
    factors = full_factorial((3, 4), repeats=2)
    assert mig(factors.astype(float), factors, num_bins=12) == pytest.approx(
        1.0, abs=1e-12)
    # A second copy of factor 0: its gap is 0, factor 1's stays 1.
    codes = np.c_[factors[:, 0], factors[:, 0], factors[:, 1]]
    assert mig(codes, factors, num_bins=12) == pytest.approx(0.5, abs=1e-12)
    # Integer-valued float factors are discrete.
    assert mig(codes, factors.astype("float32"), num_bins=12) == pytest.approx(
        0.5, abs=1e-12)


def test_mig_aligned_codes_score_near_one_rotated_codes_clearly_lower():
    factors = random_factors(1000, SIZES)
    codes = noisy_codes(factors, noise=0.1)
    aligned = mig(codes, factors)
    rotated = mig(codes @ random_rotation(3), factors)
    assert aligned > 0.9, aligned       # 0.98 observed
    assert rotated < 0.4, rotated       # 0.21 observed
    # A permutation and rescaling of the codes changes nothing.
    assert mig(-3.0 * codes[:, ::-1], factors) == pytest.approx(aligned)


@pytest.mark.parametrize("codes, factors, argument, match", [
    (np.zeros((10, 2)), np.zeros((9, 2)), "factors",
     r"as many rows as `codes` \(N=10\).*factors.shape=\(9, 2\)"),
    (np.zeros(10), np.zeros((10, 2)), "codes", r"codes.shape=\(10,\)"),
    (np.zeros((10, 2)), np.zeros((10, 2, 1)), "factors",
     r"factors.shape=\(10, 2, 1\)"),
    (np.zeros((10, 2)), np.c_[np.arange(10), np.linspace(0, 1, 10)],
     "factors", r"discrete factors.*factors\[:, 1\].*non-integer"),
    (np.c_[np.zeros(10), [np.nan] + [0.0] * 9], np.c_[np.arange(10)],
     "codes", r"no NaN.*codes\[0, 1\]=nan"),
    (np.zeros((1, 2)), np.zeros((1, 1)), "codes", r"at least 2 examples"),
    (np.zeros((10, 1)), np.c_[np.arange(10)], "codes",
     r"at least 2 code dimensions"),
    (np.zeros((10, 2)), np.c_[np.arange(10), np.ones(10)], "factors",
     r"at least two values.*factors\[:, 1\]"),
    (np.array([["a", "b"]] * 3), np.zeros((3, 1)), "codes", r"dtype"),
])
def test_mig_bad_input_names_the_argument(codes, factors, argument, match):
    with pytest.raises(ValueError,
                       match=rf"argument `{argument}`.*{match}"):
        mig(codes, factors)


@pytest.mark.parametrize("num_bins", [0, 2.5, True])
def test_mig_bad_num_bins(num_bins):
    with pytest.raises(ValueError, match=r"`num_bins`.*Received: num_bins="):
        mig(np.zeros((4, 2)), np.c_[[0, 1, 0, 1]], num_bins=num_bins)


def test_mig_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)
    factors = random_factors(20, (2, 2))
    with pytest.raises(ImportError,
                       match=r'pip install "keras_vae\[disentanglement\]"'):
        mig(factors + 0.5, factors)
