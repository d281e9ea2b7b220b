"""keras_vae.disentanglement.factor_vae_score: the votes and the
majority-vote classifier re-counted by hand from the observations the
sampler was asked for and the codes the representation returned; exact
scores of aligned codes, pruning of collapsed codes, a mixing rotation,
Shapes as the sampler, bad input."""

import numpy as np
import pytest

from keras_vae.datasets import Shapes
from keras_vae.disentanglement import factor_vae_score
from tests.disentanglement.toy import (
    Representation,
    ToySampler,
    hadamard,
    random_rotation,
)

SIZES = (20, 20, 20, 20)
SMALL = {"batch_size": 16, "num_train": 60, "num_eval": 40,
         "num_variance_estimate": 500}


def score_by_hand(sampler, representation, batch_size, num_train,
                  prune_threshold=0.05):
    """The FactorVAE score from the recorded calls: the first is the
    global sample; then groups of `batch_size` rows, training groups
    first, each with one factor held fixed (the label)."""
    variances = representation.outputs[0].var(axis=0, ddof=1)
    active = [k for k, var in enumerate(variances)
              if np.sqrt(var) >= prune_threshold and var > 0]
    factors = np.concatenate(sampler.calls[1:])
    codes = np.concatenate(representation.outputs[1:])
    num_factors, num_codes = factors.shape[1], codes.shape[1]
    train = np.zeros((num_factors, num_codes), dtype=int)
    evaluation = np.zeros((num_factors, num_codes), dtype=int)
    for g in range(len(factors) // batch_size):
        rows = slice(g * batch_size, (g + 1) * batch_size)
        fixed = [j for j in range(num_factors)
                 if len(set(factors[rows, j])) == 1]
        assert len(fixed) == 1
        ratios = {k: codes[rows, k].var(ddof=1) / variances[k]
                  for k in active}
        argmin = min(active, key=lambda k: ratios[k])
        (train if g < num_train else evaluation)[fixed[0], argmin] += 1
    # Majority vote per code (the first factor on ties, as np.argmax).
    classifier = [max(range(num_factors), key=lambda j: (train[j, k], -j))
                  for k in range(num_codes)]

    def accuracy(votes):
        return sum(votes[classifier[k], k]
                   for k in range(num_codes)) / votes.sum()
    return accuracy(train), accuracy(evaluation), len(active)


def test_factor_vae_score_equals_votes_counted_by_hand():
    sampler = ToySampler(SIZES)
    # Partly mixed codes, a collapsed (constant) code and a code of std
    # 0.01 < prune_threshold: both are left out.
    representation = Representation(
        SIZES, mixing=random_rotation(4, seed=1), noise=0.3,
        extra=lambda c: np.c_[np.ones(len(c)), 0.01 * c[:, 0]])
    scores = factor_vae_score(representation, sampler, seed=5, **SMALL)
    train, evaluation, active = score_by_hand(sampler, representation, 16,
                                              60)
    assert scores == {"train_accuracy": pytest.approx(train, abs=1e-12),
                      "eval_accuracy": pytest.approx(evaluation, abs=1e-12),
                      "num_active_dims": active}
    assert active == 4 and 0.3 < evaluation < 1.0


def test_factor_vae_score_is_seeded():
    def run(seed):
        return factor_vae_score(
            Representation(SIZES, mixing=hadamard(4), noise=0.3),
            ToySampler(SIZES), seed=seed, **SMALL)
    assert run(1) == run(1)
    assert run(1) != run(2)


def test_aligned_codes_score_one_mixed_codes_clearly_lower():
    aligned = factor_vae_score(Representation(SIZES, noise=0.05),
                               ToySampler(SIZES), **SMALL)
    assert aligned == {"train_accuracy": 1.0, "eval_accuracy": 1.0,
                       "num_active_dims": 4}
    # A rescaled, permuted code is as good (codes are normalised).
    scaled = factor_vae_score(
        Representation(SIZES, mixing=10 * np.eye(4)[::-1], noise=0.05),
        ToySampler(SIZES), **SMALL)
    assert scaled == aligned
    # Every code mixes every factor with the same weight: the code of least
    # variance is noise, the majority vote little better than chance 1/4.
    mixed = factor_vae_score(
        Representation(SIZES, mixing=hadamard(4), noise=0.05),
        ToySampler(SIZES), **SMALL)
    assert mixed["eval_accuracy"] < 0.5, mixed  # 0.28 observed


def test_collapsed_codes_are_pruned():
    extra = lambda c: np.c_[np.zeros(len(c)), 0.01 * c[:, 0]]  # noqa: E731
    scores = factor_vae_score(Representation(SIZES, noise=0.05, extra=extra),
                              ToySampler(SIZES), **SMALL)
    assert scores["num_active_dims"] == 4
    assert scores["eval_accuracy"] == 1.0
    # threshold 0 keeps the small code, never the constant one.
    scores = factor_vae_score(Representation(SIZES, noise=0.05, extra=extra),
                              ToySampler(SIZES), prune_threshold=0.0,
                              **SMALL)
    assert scores["num_active_dims"] == 5
    # All collapsed: zero, as disentanglement_lib.
    assert factor_vae_score(lambda x: 0.0 * x, ToySampler(SIZES),
                            **SMALL) == {"train_accuracy": 0.0,
                                         "eval_accuracy": 0.0,
                                         "num_active_dims": 0}


def test_shapes_is_a_sampler():
    # Hand-made codes of the images: centre of mass (x, y), pixel count.
    def representation(images):
        ink = images[..., 0]
        count = ink.sum(axis=(1, 2))
        grid = np.arange(ink.shape[1])
        return np.c_[(ink.sum(1) * grid).sum(1) / count,
                     (ink.sum(2) * grid).sum(1) / count, count]
    scores = factor_vae_score(
        representation, Shapes(image_size=16, num_orientations=8),
        batch_size=16, num_train=100, num_eval=100, num_variance_estimate=300)
    # Three of the five factors have a code (x, y, scale): about 3/5.
    assert scores["num_active_dims"] == 3
    assert 0.45 < scores["eval_accuracy"] <= 0.8, scores  # 0.66 observed


class NoObservations:
    def sample_factors(self, num, rng):
        return np.zeros((num, 2), int)


class HalfFactors(ToySampler):
    def sample_factors(self, num, rng):
        return super().sample_factors(num, rng) + 0.5


@pytest.mark.parametrize("representation, sampler, kwargs, argument, match", [
    (lambda x: x, NoObservations(), {}, "sampler",
     r"sample_observations_from_factors"),
    ("codes", ToySampler(), {}, "representation_fn", r"a callable"),
    (lambda x: x, HalfFactors(), {}, "sampler", r"discrete factors"),
    (lambda x: x[:-1], ToySampler(), {}, "representation_fn",
     r"codes \(num, num_codes\) for its 500 observations"),
    (lambda x: x * np.nan, ToySampler(), {}, "representation_fn",
     r"no NaN"),
    (lambda x: x, ToySampler(), {"batch_size": 1}, "batch_size",
     r"an integer >= 2"),
    (lambda x: x, ToySampler(), {"num_variance_estimate": 1},
     "num_variance_estimate", r"an integer >= 2"),
    (lambda x: x, ToySampler(), {"num_eval": 0}, "num_eval",
     r"positive integer"),
    (lambda x: x, ToySampler(), {"prune_threshold": -0.1},
     "prune_threshold", r">= 0.0"),
])
def test_bad_input_names_the_argument(representation, sampler, kwargs,
                                      argument, match):
    args = dict(SMALL, **kwargs)
    with pytest.raises(ValueError, match=rf"argument `{argument}`.*{match}"):
        factor_vae_score(representation, sampler, **args)
