"""The one forward trace: training, elbo and log_likelihood read the same."""


import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae import objectives
from keras_vae.losses import BernoulliNLL
from keras_vae.models.trace import LevelTrace, Trace
from keras_vae.random import derive_seed
from tests.builders import binary_data, mlp_vae

X = binary_data(64, d=32, seed=5)


@pytest.fixture(scope="module")
def vae():
    model = mlp_vae(latent=3, seed=4)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=BernoulliNLL(),
                  objective=keras_vae.objectives.ELBO(num_samples=3))
    return model


def test_trace_shapes(vae):
    t = vae.trace(X[:8], X[:8], num_samples=3, seed=tf.constant([1, 2]))
    assert isinstance(t, Trace) and isinstance(t.levels[0], LevelTrace)
    level = t.levels[0]
    assert level.z.shape == (24, 3)
    assert level.log_q.shape == level.log_p.shape == (3, 8)
    assert level.kl.shape == (8,) and t.log_px_z.shape == (3, 8)


def test_trace_terms_by_hand(vae):
    """log q, log p, KL and log p(x|z) of the trace, re-derived in numpy
    from the encoder's (loc, scale), the noise of the same seed and the
    decoder."""
    x, k, seed = X[:8], 4, tf.constant([5, 6])
    t = vae.trace(x, x, num_samples=k, seed=seed)
    loc, scale = (a.numpy().astype("float64") for a in vae.encoder(x))
    eps = keras_vae.random.standard_normal(
        (k, 8, 3), seed=derive_seed(seed, 0)).numpy().astype("float64")
    z = loc + scale * eps
    np.testing.assert_allclose(t.levels[0].z, z.reshape(-1, 3), rtol=1e-5,
                               atol=1e-6)
    log_q = np.sum(-0.5 * eps**2 - np.log(scale) - 0.5 * np.log(2 * np.pi), -1)
    log_p = np.sum(-0.5 * z**2 - 0.5 * np.log(2 * np.pi), -1)
    kl = 0.5 * np.sum(scale**2 + loc**2 - 1 - 2 * np.log(scale), -1)
    logits = vae.decoder(z.reshape(-1, 3).astype("float32")).numpy()
    log_px = np.sum(np.tile(x, (k, 1)) * logits - np.logaddexp(0, logits), -1)
    np.testing.assert_allclose(t.log_qz, log_q, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(t.log_pz, log_p, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(t.kl, kl, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t.log_px_z, log_px.reshape(k, 8), rtol=1e-5,
                               atol=1e-4)


def test_elbo_and_log_likelihood_are_the_trace(vae):
    """The compiled, chunked `elbo` / `log_likelihood` equal the eager
    trace of the same seeds (chunk 0 of example chunk 0)."""
    x, k = X[:16], 8
    seed = derive_seed(derive_seed(7), 0)  # example chunk 0
    t = vae.trace(x, x, num_samples=k, seed=derive_seed(seed, 0))
    log_w = t.log_weights().numpy().astype("float64")
    want_ll = np.log(np.mean(np.exp(log_w), axis=0))
    got_ll = vae.log_likelihood(x, num_samples=k, batch_size=16, seed=7)
    np.testing.assert_allclose(got_ll, want_ll, rtol=1e-5, atol=1e-4)
    got_elbo = vae.elbo(x, num_samples=k, batch_size=16, seed=7)
    np.testing.assert_allclose(got_elbo, t.elbo, rtol=1e-5, atol=1e-4)


def test_train_step_reads_the_same_trace(vae):
    """The XLA-compiled step (`evaluate`, `fit` with a zero learning rate)
    reports the objective of the eager trace drawn from the same noise
    state."""
    x = X[:32]
    sampler = vae.sampler
    state = sampler.seed_generator.state.numpy()
    loss, metrics = vae.compute_objective(x, training=False)
    sampler.seed_generator.state.assign(state)
    t = vae.trace(x, x, num_samples=3)
    np.testing.assert_allclose(metrics["elbo"], np.mean(t.elbo), rtol=1e-6)
    np.testing.assert_allclose(
        loss, np.mean(t.reconstruction) + float(objectives.Objective.kl_penalty(t)), rtol=1e-6)
    sampler.seed_generator.state.assign(state)
    got = vae.evaluate(x, batch_size=32, verbose=0, return_dict=True)
    np.testing.assert_allclose(got["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(got["elbo"], metrics["elbo"], rtol=1e-5)
    sampler.seed_generator.state.assign(state)
    hist = vae.fit(x, batch_size=32, epochs=1, verbose=0,
                   shuffle=False).history
    np.testing.assert_allclose(hist["loss"][0], loss, rtol=1e-5)


def test_mode_and_prior_traces(vae):
    x = X[:5]
    t = vae.trace(x, mode="mode")
    loc, _ = vae.encoder(x)
    np.testing.assert_array_equal(t.levels[0].z, loc)
    assert t.levels[0].kl is None
    np.testing.assert_allclose(vae.reconstruct(x),
                               tf.sigmoid(t.decoder_params), rtol=1e-6)
    p = vae.trace(None, mode="prior", seed=tf.constant([0, 3]), num_rows=6)
    assert p.levels[0].z.shape == (6, 3) and p.decoder_params.shape == (6, 32)
    with pytest.raises(ValueError, match="needs a `seed`"):
        vae.trace(None, mode="prior", num_rows=6)


def test_derive_seed_streams_differ_and_agree_under_xla():
    a, b = derive_seed(1, 0), derive_seed(1, 1)
    assert not np.array_equal(a, b)
    assert not np.array_equal(derive_seed(1, 0, 1), derive_seed(1, 1, 0))
    xla = tf.function(lambda s: derive_seed(s, 4, 2, 0), jit_compile=True)
    for seed in ([0, 1], [-5, 2**31 - 1], [123456789, -987654321]):
        np.testing.assert_array_equal(
            xla(tf.constant(seed)), derive_seed(tf.constant(seed), 4, 2, 0))
    # Non-negative int32 values, the seed format TFP and Keras accept.
    assert np.all(derive_seed(7, 1, 2, 3).numpy() >= 0)


def test_long_calls_show_progress_when_asked(vae, capsys):
    x = X[:40]
    vae.log_likelihood(x, num_samples=4, batch_size=10, seed=0)
    assert "chunk" not in capsys.readouterr().out
    vae.log_likelihood(x, num_samples=4, batch_size=10, seed=0, verbose=1)
    assert "4/4" in capsys.readouterr().out
    vae.reconstruct(x, batch_size=20, verbose=1)
    assert "2/2" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"`verbose`.*Received: verbose=3"):
        vae.elbo(x, verbose=3)
