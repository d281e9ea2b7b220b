import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae import ReparameterizedSample
from tests.helpers import run_layer_test

RNG = np.random.default_rng(0)
LOC = RNG.normal(size=(6, 3)).astype("float32")
SCALE = RNG.uniform(0.5, 2.0, size=(6, 3)).astype("float32")


@pytest.mark.parametrize("inference", ["mean", "sample"])
def test_shared_layer_checks(inference):
    run_layer_test(
        ReparameterizedSample,
        {"seed": 7, "inference": inference},
        (LOC, SCALE),
        expected_output_shape=(6, 3),
        training_arg=True,
        expected_num_trainable_weights=0, expected_num_non_trainable_weights=0,
        expected_num_seed_generators=1, expected_num_losses=0,
    )


def test_shared_layer_checks_full_covariance():
    tril = np.tril(RNG.normal(size=(6, 3, 3))).astype("float32")
    tril[:, range(3), range(3)] = np.abs(tril[:, range(3), range(3)]) + 0.5
    run_layer_test(
        ReparameterizedSample, {"seed": 1}, (LOC, tril),
        expected_output_shape=(6, 3), training_arg=True,
        expected_num_trainable_weights=0, expected_num_non_trainable_weights=0,
        expected_num_seed_generators=1, expected_num_losses=0,
    )


def test_mean_and_std_over_many_draws():
    n = 200_000
    loc = np.array([[1.0, -2.0, 0.0]], "float32")
    scale = np.array([[0.5, 2.0, 1e-3]], "float32")
    z = ReparameterizedSample(seed=3).draw(loc, scale, n).numpy()
    # Standard error of the mean is scale / sqrt(n) ~ 0.0045 for scale 2.
    np.testing.assert_allclose(z.mean(0), loc[0], atol=5 * 2.0 / np.sqrt(n))
    # Relative standard error of the std is ~ 1 / sqrt(2n) ~ 0.0016.
    np.testing.assert_allclose(z.std(0), scale[0], rtol=0.01)


def test_full_covariance_draws_have_covariance_l_lt():
    tril = np.array([[[1.0, 0.0], [0.8, 0.6]]], "float32")
    z = ReparameterizedSample(seed=4).draw(np.zeros((1, 2), "float32"), tril,
                                           200_000).numpy()
    np.testing.assert_allclose(np.cov(z.T), tril[0] @ tril[0].T, atol=0.02)


def test_gradients_with_respect_to_loc_and_scale():
    layer = ReparameterizedSample(seed=5)
    loc = tf.Variable(LOC)
    scale = tf.Variable(SCALE)
    with tf.GradientTape(persistent=True) as tape:
        z = layer((loc, scale), training=True)
        total = tf.reduce_sum(z)
    eps = (z.numpy() - LOC) / SCALE
    np.testing.assert_allclose(tape.gradient(total, loc), np.ones_like(LOC))
    np.testing.assert_allclose(tape.gradient(total, scale), eps, rtol=1e-4,
                               atol=1e-5)


def test_seed_reproducible_and_inference_modes():
    a = ReparameterizedSample(seed=11)((LOC, SCALE), training=True)
    b = ReparameterizedSample(seed=11)((LOC, SCALE), training=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        ReparameterizedSample()((LOC, SCALE), training=False), LOC
    )
    s = ReparameterizedSample(seed=11, inference="sample")((LOC, SCALE))
    np.testing.assert_array_equal(s, a)


def test_scale_of_wrong_shape_is_a_clear_error():
    loc = keras.Input((3,))
    scale = keras.Input((4,))
    with pytest.raises(ValueError, match=r"scale.shape=\(None, 4\)"):
        ReparameterizedSample()((loc, scale))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"inference": "median"}, r"argument `inference`.*Received: inference='median'"),
     ({"seed": "x"}, r"argument `seed`")],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReparameterizedSample(**kwargs)
