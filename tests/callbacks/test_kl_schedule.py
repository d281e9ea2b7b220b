import keras
import numpy as np
import pytest

import keras_vae
from keras_vae.callbacks import CapacityAnnealing, KLWarmUp
from keras_vae.losses import BernoulliNLL
from tests.builders import binary_data


def vae_with(**kl_kwargs):
    x_in = keras.Input((32,))
    h = keras.layers.Dense(16, activation="relu")(x_in)
    q = keras_vae.KLRegularizer(**kl_kwargs)(keras_vae.GaussianEncoderHead(2)(h))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(32)(z))
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), loss=BernoulliNLL())
    return vae


def test_warm_up_values():
    cb = KLWarmUp(steps=10, start=0.0, end=2.0)
    assert [cb.value(t) for t in (0, 5, 10, 20)] == [0.0, 1.0, 2.0, 2.0]


def test_compiled_step_reads_the_scheduled_weight():
    x = binary_data(256)
    vae = vae_with(weight=1.0)  # compiled with beta = 1 ...
    hist = vae.fit(x, batch_size=64, epochs=1, verbose=0,
                   callbacks=[KLWarmUp(steps=100, start=0.0, end=0.0)]).history
    # ... but the schedule holds beta at 0: loss is the reconstruction alone.
    np.testing.assert_allclose(hist["loss"], hist["reconstruction"], rtol=1e-6)
    assert hist["kl"][0] > 0


def test_ramp_reaches_end_and_continues_across_fits():
    x = binary_data(256)
    vae = vae_with()
    cb = KLWarmUp(steps=6)
    vae.fit(x, batch_size=64, epochs=1, verbose=0, callbacks=[cb])
    np.testing.assert_allclose(float(vae.kl_layer.kl_weight), cb.value(3))
    vae.fit(x, batch_size=64, epochs=2, verbose=0, callbacks=[cb])
    assert float(vae.kl_layer.kl_weight) == 1.0


def test_capacity_annealing_penalises_distance_to_capacity():
    x = binary_data(256)
    vae = vae_with(capacity=0.0, weight=5.0)
    cap = 50.0
    hist = vae.fit(x, batch_size=256, epochs=1, verbose=0,
                   callbacks=[CapacityAnnealing(steps=1, start=cap, end=cap)]).history
    expected = hist["reconstruction"][0] + 5.0 * abs(hist["kl"][0] - cap)
    np.testing.assert_allclose(hist["loss"][0], expected, rtol=1e-5)


def test_schedule_without_matching_layer_is_a_clear_error():
    vae = vae_with()  # no capacity
    with pytest.raises(ValueError, match="no KLRegularizer with `kl_capacity`"):
        vae.fit(binary_data(64), epochs=1, verbose=0,
                callbacks=[CapacityAnnealing(steps=5, end=10.0)])


def test_capacity_and_free_bits_are_exclusive():
    with pytest.raises(ValueError, match="`free_bits` or `capacity`"):
        keras_vae.KLRegularizer(free_bits=0.1, capacity=1.0)
