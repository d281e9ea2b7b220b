"""IWAE(gradient="dreg"): the doubly reparameterized encoder gradient
(Tucker et al. 2018) against the standard IWAE gradient."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae.losses import BernoulliNLL
from keras_vae.objectives import IWAE
from tests.objectives import estimator_checks as ec


def _gradients(vae, objective, x, part, repeats):
    vae.compile(loss=BernoulliNLL(), objective=objective)
    return ec.draws_from(vae, ec.estimator(vae, x, part), repeats)


def test_decoder_gradient_is_the_standard_one_and_encoder_is_unbiased():
    # One estimator of every weight per gradient; draw r of both used the
    # same noise (paired).
    x, _ = ec.data(repeat=64)
    vae = ec.gaussian_vae()
    standard = ec.split_parts(vae, _gradients(vae, IWAE(5), x, "both", 100))
    dreg = ec.split_parts(
        vae, _gradients(vae, IWAE(5, gradient="dreg"), x, "both", 100))
    # DReG changes only the encoder's gradient: the decoder's is the
    # standard one, draw for draw.
    np.testing.assert_allclose(dreg["decoder"], standard["decoder"],
                               rtol=1e-4, atol=1e-6)
    # The encoder's: unbiased for the standard one, but not the same
    # estimator (the draws differ).
    diff = standard["encoder"] - dreg["encoder"]
    ec.assert_unbiased(diff, np.zeros(diff.shape[1]))
    assert not np.allclose(standard["encoder"][0], dreg["encoder"][0])


def test_encoder_snr_at_64_samples_is_well_above_the_standard_one():
    """SNR = |E g| / std g per encoder weight for one example (Rainforth
    et al. 2018): falls like 1/sqrt(K) for the standard estimator."""
    x = ec.data(repeat=1)[1][:1]
    vae = ec.gaussian_vae()
    snr = {}
    for gradient in ("standard", "dreg"):
        g = _gradients(vae, IWAE(64, gradient=gradient), x, "encoder", 200)
        snr[gradient] = np.mean(np.abs(g.mean(0)) / (g.std(0) + 1e-12))
    ratio = snr["dreg"] / snr["standard"]
    print(f"encoder SNR at K=64: standard {snr['standard']:.2f}, "
          f"dreg {snr['dreg']:.2f}, ratio {ratio:.1f}")
    assert ratio > 3.0


def test_dreg_trains_under_xla():
    x, _ = ec.data(repeat=16)
    vae = ec.gaussian_vae()
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL(),
                objective=IWAE(4, gradient="dreg"))
    history = vae.fit(x, batch_size=32, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_dreg_refuses_levels_it_cannot_differentiate():
    x_in = keras.Input((ec.D,))
    h = keras.layers.Dense(8)(x_in)
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(4)(h))
    z = keras_vae.IAFSample(num_flows=1, hidden_units=(8,))(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(ec.D)(z))
    with pytest.raises(ValueError, match="gradient='dreg'.*flow"):
        vae.compile(loss=BernoulliNLL(), objective=IWAE(4, gradient="dreg"))
    with pytest.raises(ValueError, match="gradient"):
        IWAE(4, gradient="doubly")
