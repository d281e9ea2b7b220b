import keras
import numpy as np

import keras_vae
from keras_vae import evaluate
from keras_vae.losses import BernoulliNLL
from tests.models.conftest import binary_data


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
