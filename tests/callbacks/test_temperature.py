import keras
import numpy as np
import pytest

import keras_vae
from keras_vae.callbacks import TemperatureAnnealing
from keras_vae.losses import BernoulliNLL
from tests.builders import binary_data


def gumbel_vae(temperature=1.0):
    x_in = keras.Input((32,))
    h = keras.layers.Dense(16, activation="relu")(x_in)
    logits = keras_vae.KLRegularizer()(keras_vae.GumbelSoftmaxHead(3, 4)(h))
    z = keras_vae.GumbelSoftmaxSample(temperature=temperature, seed=0,
                                      name="gumbel")(logits)
    out = keras.layers.Dense(32)(keras.layers.Flatten()(z))
    vae = keras_vae.VAEModel(x_in, out)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), loss=BernoulliNLL())
    return vae


def test_values_decay_exponentially_to_the_floor():
    cb = TemperatureAnnealing(steps=10, start=1.0, end=0.25)
    values = [cb.value(t) for t in (0, 5, 10, 50)]
    np.testing.assert_allclose(values, [1.0, 0.5, 0.25, 0.25], rtol=1e-12)


def test_compiled_step_reads_the_annealed_temperature():
    x = binary_data(256)
    vae = gumbel_vae(temperature=1.0)
    layer = vae.get_layer("gumbel")
    cb = TemperatureAnnealing(steps=4, start=1.0, end=0.1)
    vae.fit(x, batch_size=64, epochs=1, verbose=0, callbacks=[cb])
    # 4 batches: the last one was run at step 3; the variable holds it.
    np.testing.assert_allclose(float(layer.temperature_variable),
                               cb.value(3), rtol=1e-6)
    # The XLA step draws at the variable's value: at a tiny temperature
    # the relaxed training draws are (almost) one-hot.
    layer.temperature_variable.assign(1e-3)
    draws = keras.ops.convert_to_numpy(layer(
        vae.levels[0].stage(x[:64]), training=True))
    assert np.mean(np.max(draws, -1)) > 0.99


def test_bad_arguments_and_no_layer_to_drive():
    with pytest.raises(ValueError, match=r"`end` must be <= `start`"):
        TemperatureAnnealing(10, start=0.5, end=1.0)
    with pytest.raises(ValueError, match=r"argument `steps`"):
        TemperatureAnnealing(0)
    x_in = keras.Input((4,))
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(x_in))
    z = keras_vae.ReparameterizedSample()(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(4)(z))
    vae.compile(loss=BernoulliNLL())
    with pytest.raises(ValueError, match="no GumbelSoftmaxSample"):
        vae.fit(np.zeros((8, 4), "float32"), epochs=1, verbose=0,
                callbacks=[TemperatureAnnealing(5)])
