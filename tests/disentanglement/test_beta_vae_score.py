"""keras_vae.disentanglement.beta_vae_score: the features (mean absolute
code differences of pairs sharing one factor) and labels rebuilt by hand
from the recorded calls, aligned codes vs codes that mix every factor
into every code, Shapes as the sampler, bad input."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from keras_vae.datasets import Shapes
from keras_vae.disentanglement import beta_vae_score
from tests.disentanglement.toy import (
    Representation,
    ToySampler,
    hadamard,
    random_rotation,
)

SIZES = (20, 20, 20, 20)
SMALL = {"batch_size": 16, "num_train": 80, "num_eval": 40}


def points_by_hand(sampler, representation, batch_size):
    """(features, labels) of every point: the recorded rows come in groups
    of 2·batch_size, the batch_size first examples of the pairs then the
    second ones; the label is the factor equal within every pair."""
    factors = np.concatenate(sampler.calls)
    codes = np.concatenate(representation.outputs)
    features, labels = [], []
    for start in range(0, len(factors), 2 * batch_size):
        first = slice(start, start + batch_size)
        second = slice(start + batch_size, start + 2 * batch_size)
        shared = [j for j in range(factors.shape[1])
                  if np.array_equal(factors[first, j], factors[second, j])]
        assert len(shared) == 1
        labels.append(shared[0])
        features.append(np.abs(codes[first] - codes[second]).mean(axis=0))
    return np.array(features), np.array(labels)


def test_beta_vae_score_equals_classifier_on_features_by_hand():
    sampler = ToySampler(SIZES)
    representation = Representation(SIZES, mixing=random_rotation(4, seed=1),
                                     noise=0.3)
    scores = beta_vae_score(representation, sampler, seed=3, **SMALL)
    features, labels = points_by_hand(sampler, representation, 16)
    assert len(labels) == 80 + 40
    model = LogisticRegression(random_state=3).fit(features[:80],
                                                   labels[:80])
    assert scores == {
        "train_accuracy": pytest.approx(
            np.mean(model.predict(features[:80]) == labels[:80])),
        "eval_accuracy": pytest.approx(
            np.mean(model.predict(features[80:]) == labels[80:]))}


def test_aligned_codes_score_one_mixed_codes_near_chance():
    aligned = beta_vae_score(Representation(SIZES, noise=0.05),
                             ToySampler(SIZES), **SMALL)
    assert aligned == {"train_accuracy": 1.0, "eval_accuracy": 1.0}
    # Every code mixes every factor with the same weight: the features do
    # not depend on which factor is shared (chance: 1/4).
    mixed = beta_vae_score(
        Representation(SIZES, mixing=hadamard(4), noise=0.05),
        ToySampler(SIZES), **SMALL)
    assert mixed["eval_accuracy"] < 0.5, mixed  # 0.23 observed
    assert beta_vae_score(Representation(SIZES, mixing=hadamard(4)),
                          ToySampler(SIZES), seed=1, **SMALL) == (
        beta_vae_score(Representation(SIZES, mixing=hadamard(4)),
                       ToySampler(SIZES), seed=1, **SMALL))


def test_shapes_is_a_sampler():
    def representation(images):  # centre of mass and pixel count
        ink = images[..., 0]
        count = ink.sum(axis=(1, 2))
        grid = np.arange(ink.shape[1])
        return np.c_[(ink.sum(1) * grid).sum(1) / count,
                     (ink.sum(2) * grid).sum(1) / count, count / 10]
    scores = beta_vae_score(representation,
                            Shapes(image_size=16, num_orientations=8),
                            batch_size=16, num_train=100, num_eval=100)
    # x, y and scale are told apart, shape and orientation hardly: > 1/5.
    assert 0.45 < scores["eval_accuracy"] < 1.0, scores  # 0.59 observed


class OneFactor(ToySampler):
    def __init__(self):
        super().__init__(sizes=(5,))


@pytest.mark.parametrize("sampler, kwargs, argument, match", [
    (OneFactor(), {}, "sampler", r"at least 2 factors"),
    (object(), {}, "sampler", r"sample_factors\(num, rng\)"),
    (ToySampler(), {"num_train": 1}, "num_train", r"at least two factors"),
    (ToySampler(), {"batch_size": 1.0}, "batch_size", r"an integer >= 2"),
    (ToySampler(), {"seed": "0"}, "seed", r"an int or None"),
    (ToySampler(), {"max_iter": 0}, "max_iter", r"positive integer"),
])
def test_bad_input_names_the_argument(sampler, kwargs, argument, match):
    args = dict(SMALL, **kwargs)
    with pytest.raises(ValueError, match=rf"argument `{argument}`.*{match}"):
        beta_vae_score(lambda x: x, sampler, **args)
