import keras
import numpy as np
import pytest

import keras_vae
from keras_vae import evaluate
from keras_vae.losses import BernoulliNLL
from tests.builders import binary_data


def test_diagnostics_on_a_model_with_one_dead_unit():
    x = binary_data(256)
    x_in = keras.Input((32,))
    head = keras_vae.GaussianEncoderHead(3)
    q = keras_vae.KLRegularizer()(head(keras.layers.Dense(16, "relu")(x_in)))
    vae = keras_vae.VAEModel(
        x_in, keras.layers.Dense(32)(keras_vae.ReparameterizedSample(seed=0)(q)))
    vae.compile(loss=BernoulliNLL())
    kernel, bias = head.loc_dense.get_weights()
    kernel[:, 2] = 0.0  # unit 2's posterior mean does not depend on x
    bias[2] = 0.0
    head.loc_dense.set_weights([kernel, bias])

    kl = evaluate.kl_per_dimension(vae, x)
    loc, scale = vae.encode(x)
    want = np.mean(0.5 * (scale**2 + loc**2 - 1 - 2 * np.log(scale)), axis=0)
    np.testing.assert_allclose(kl, want, rtol=1e-4)

    count, variances = evaluate.active_units(vae, x, threshold=1e-6)
    assert count == 2 and variances[2] == 0.0

    err = evaluate.reconstruction_error(vae, x)
    recon = vae.reconstruct(x)
    np.testing.assert_allclose(err, np.mean((x - recon) ** 2, axis=1), rtol=1e-5)

    gap = evaluate.elbo_gap(vae, x[:32], num_samples=300, elbo_samples=300)
    assert gap.shape == (32,) and np.mean(gap) > 0


def test_active_units_per_level_and_through_the_flow():
    x = binary_data(128, 16)
    x_in = keras.Input((16,))
    h = keras.layers.Dense(16, activation="relu")(x_in)
    loc, scale = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(3)(h))
    z = keras_vae.IAFSample(seed=0, name="flow")([loc, scale, h])
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(16)(z))
    vae.compile(loss=keras_vae.losses.BernoulliNLL())
    count, variances = evaluate.active_units(vae, x, threshold=0.0)
    # The mode is the flow of loc, not loc.
    modes = vae.posterior_mode(x)
    np.testing.assert_allclose(variances, np.var(modes.astype("float64"), 0),
                               rtol=1e-6)
    assert not np.allclose(modes, vae.encode(x)[0])
    assert count == 3

    q2 = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(h))
    z2 = keras_vae.ReparameterizedSample(name="top")(q2)
    q1 = keras_vae.GaussianEncoderHead(3)(keras.layers.Concatenate()([h, z2]))
    z1 = keras_vae.ReparameterizedSample(name="bottom")(
        keras_vae.KLRegularizer()(q1))
    two = keras_vae.VAEModel(x_in, keras.layers.Dense(16)(z1))
    two.compile(loss=keras_vae.losses.BernoulliNLL())
    top = evaluate.active_units(two, x, threshold=0.0, level="top")[1]
    bottom = evaluate.active_units(two, x, threshold=0.0, level=1)[1]
    assert top.shape == (2,) and bottom.shape == (3,)
    np.testing.assert_allclose(top, np.var(two.encode(x)[0][0], 0), rtol=1e-5)
    with pytest.raises(ValueError, match="pass `level=`"):
        evaluate.active_units(two, x)
    with pytest.raises(ValueError, match=r"argument `level`.*'middle'"):
        evaluate.active_units(two, x, level="middle")
