"""MissingIndicator: fill and mask, by hand; the shared layer checks."""

import keras
import numpy as np
import pytest

import keras_vae
from tests.helpers import run_layer_test

NAN = float("nan")


def _rows():
    x = np.arange(12, dtype="float32").reshape(3, 4) - 5.0
    x[0, 1] = NAN
    x[2, 3] = NAN
    x[1, 0] = -1.0
    return x


@pytest.mark.parametrize("kwargs,shape", [
    ({"missing_values": -1.0, "fill_value": 0.5}, (3, 8)),
    ({"output_mode": "pair"}, [(3, 4), (3, 4)]),
])
def test_layer_checks(kwargs, shape):
    run_layer_test(
        keras_vae.MissingIndicator, kwargs, _rows(), shape,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        expected_num_seed_generators=0, expected_num_losses=0,
    )


def test_fill_and_mask_by_hand():
    x = _rows()
    out = keras_vae.MissingIndicator(fill_value=2.0)(x).numpy()
    mask = ~np.isnan(x)
    np.testing.assert_array_equal(out[:, 4:], mask.astype("float32"))
    np.testing.assert_array_equal(out[:, :4], np.where(mask, x, 2.0))
    # A number marks missing entries as well as NaN.
    filled, m = keras_vae.MissingIndicator(
        missing_values=-1, output_mode="pair")(x)
    mask &= x != -1.0
    np.testing.assert_array_equal(m.numpy(), mask.astype("float32"))
    np.testing.assert_array_equal(filled.numpy(), np.where(mask, x, 0.0))


def test_spatial_rows_concatenate_on_the_last_axis():
    x = np.ones((2, 3, 3, 2), "float32")
    x[0, 1, 1, 0] = NAN
    layer = keras_vae.MissingIndicator()
    out = layer(x).numpy()
    assert out.shape == (2, 3, 3, 4)
    assert out[0, 1, 1, 2] == 0.0 and out[0, 1, 1, 0] == 0.0
    assert layer.compute_output_shape((None, 3, 3, 2)) == (None, 3, 3, 4)


@pytest.mark.parametrize("kwargs,match", [
    ({"missing_values": "nan"}, "missing_values"),
    ({"fill_value": float("inf")}, "fill_value"),
    ({"output_mode": "stack"}, "output_mode"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_vae.MissingIndicator(**kwargs)


def test_nan_is_stored_as_none():
    layer = keras_vae.MissingIndicator(missing_values=NAN)
    assert layer.get_config()["missing_values"] is None


def test_an_input_read_by_an_indicator_and_another_layer_is_refused():
    x_in = keras.Input((4,))
    h = keras.layers.Concatenate()([keras_vae.MissingIndicator()(x_in), x_in])
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(h))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(4)(z))
    from keras_vae.models import missing

    with pytest.raises(ValueError, match="only reader"):
        missing.indicator_inputs(vae)
