"""CategoricalSample: exact one-hot draws, reproducible, no gradient."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from keras_vae import CategoricalSample
from tests.helpers import run_layer_test

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(6, 3, 4)).astype("float32")


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("kwargs", [{"seed": 7},
                                    {"seed": 7, "inference": "sample"}],
                         ids=["mode", "sample"])
def test_shared_layer_checks(kwargs):
    run_layer_test(
        CategoricalSample, kwargs, LOGITS, expected_output_shape=(6, 3, 4),
        training_arg=True,
        expected_num_trainable_weights=0, expected_num_non_trainable_weights=0,
        expected_num_seed_generators=1, expected_num_losses=0,
    )


def test_draws_are_one_hot_with_softmax_frequencies():
    logits = np.array([[[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, -3.0]]],
                      "float32")
    n = 100_000
    z = CategoricalSample(seed=1).draw(logits, num_samples=n).numpy()
    assert z.shape == (n, 2, 4)
    assert set(np.unique(z)) == {0.0, 1.0}
    np.testing.assert_array_equal(z.sum(-1), 1.0)
    expected = n * _softmax(logits[0])  # chi-square, N (C - 1) = 6 dof
    chi2 = np.sum((z.sum(0) - expected) ** 2 / expected)
    assert chi2 < stats.chi2.ppf(0.999, df=6), chi2


def test_draws_are_sample_major_and_carry_no_gradient():
    logits = np.full((2, 1, 3), -30.0, "float32")
    logits[0, 0, 0] = logits[1, 0, 2] = 30.0
    logits = tf.Variable(logits)
    layer = CategoricalSample(seed=0)
    with tf.GradientTape() as tape:
        z, log_q = layer.draw_latent([logits], num_samples=5)
        total = tf.reduce_sum(z * tf.range(3, dtype=tf.float32))
    assert log_q is None
    np.testing.assert_array_equal(np.argmax(z.numpy()[:, 0], -1), [0, 2] * 5)
    assert tape.gradient(total, logits) is None
    assert CategoricalSample.reparameterized is False


def test_same_draws_with_and_without_xla_and_after_reload(tmp_path):
    seed = tf.constant([4, 2])
    layer = CategoricalSample()
    eager = layer.draw(LOGITS, 3, seed=seed)
    xla = tf.function(lambda: layer.draw(LOGITS, 3, seed=seed),
                      jit_compile=True)()
    np.testing.assert_array_equal(eager, xla)
    x_in = keras.Input((3, 4))
    model = keras.Model(x_in, CategoricalSample(seed=5)(x_in))
    model(LOGITS, training=True)  # advance the noise stream
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(model(LOGITS, training=True),
                                  loaded(LOGITS, training=True))


def test_inference_mode_is_the_argmax():
    z = CategoricalSample()(LOGITS, training=False).numpy()
    np.testing.assert_array_equal(np.argmax(z, -1), np.argmax(LOGITS, -1))


@pytest.mark.parametrize("shape", [(6, 12), (6, 3, 1), (6, 2, 3, 4)])
def test_refuses_inputs_that_are_not_batch_n_c_logits(shape):
    with pytest.raises(ValueError, match=r"CategoricalSample expects logits "
                       r"of shape \(batch, N, C\).*Received: shape="):
        CategoricalSample()(np.zeros(shape, "float32"))
    with pytest.raises(ValueError, match="inference"):
        CategoricalSample(inference="mean")
