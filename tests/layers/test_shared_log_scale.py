import keras
import numpy as np

import keras_vae
from keras_vae.losses import LaplaceNLL
from tests.helpers import run_layer_test


def test_shared_log_scale_shared_layer_checks():
    x = np.random.default_rng(0).normal(size=(4, 5, 5, 3)).astype("float32")
    run_layer_test(
        keras_vae.SharedLogScale, {"initial_value": 0.3, "per_channel": False},
        x, expected_output_shape=(4, 5, 5, 6),
        expected_num_trainable_weights=1, expected_num_non_trainable_weights=0,
        expected_num_seed_generators=0, expected_num_losses=0)


def test_shared_log_scale_appends_its_scalar_and_learns_it():
    layer = keras_vae.SharedLogScale(per_channel=True)
    x = np.random.default_rng(1).normal(size=(2, 3, 4)).astype("float32")
    out = layer(x).numpy()
    np.testing.assert_array_equal(out[..., :4], x)
    np.testing.assert_array_equal(out[..., 4:], 0.0)
    assert layer.log_scale.shape == (4,)
    # Trained by the model's optimizer to the maximum-likelihood scale:
    # b* = mean |y - loc| (here loc = 0 is fixed, so b* = mean |y|).
    y = np.random.default_rng(2).laplace(0.0, 0.3, (256, 8)).astype(
        "float32")
    x_in = keras.Input((8,))
    loc = keras.layers.Dense(8, kernel_initializer="zeros", trainable=False)(
        x_in)
    scalar = keras_vae.SharedLogScale()
    model = keras.Model(x_in, scalar(loc))
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=LaplaceNLL(scale="learned_scalar"), jit_compile=True)
    steps = 100
    model.fit(np.zeros((steps * 256, 8), "float32"), np.tile(y, (steps, 1)),
              batch_size=256, epochs=1, verbose=0)
    np.testing.assert_allclose(np.exp(scalar.log_scale.numpy()),
                               np.abs(y).mean(), rtol=0.02)
