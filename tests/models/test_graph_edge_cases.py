"""Graph shapes that are easy to get wrong: a latent reading another
latent's posterior parameters, dict inputs, activity losses next to a
VampPrior, a conditional export whose likelihood has more parameters than
the data, objectives that cannot honour free bits."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae import objectives
from keras_vae.losses import GaussianNLL
from keras_vae.random import derive_seed

D = 4


def _x(n=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, D)).astype("float32")


def test_kl_of_a_level_read_by_another_stage_is_counted_once():
    # Level zb's posterior reads loc of level za (a KLRegularizer output), so
    # za's KLRegularizer sits inside zb's stage; its add_loss must not be
    # added on top of the objective's KL.
    x_in = keras.Input((D,), name="x")
    loc_a, scale_a = keras_vae.KLRegularizer(name="kl_a")(
        keras_vae.GaussianEncoderHead(2, name="qa")(x_in))
    za = keras_vae.ReparameterizedSample(seed=0, name="za")([loc_a, scale_a])
    qb = keras_vae.KLRegularizer(name="kl_b")(keras_vae.GaussianEncoderHead(
        2, name="qb")(keras.layers.Concatenate()([x_in, loc_a])))
    zb = keras_vae.ReparameterizedSample(seed=1, name="zb")(qb)
    out = keras.layers.Dense(D)(keras.layers.Concatenate()([za, zb]))
    vae = keras_vae.VAEModel(x_in, out)
    vae.compile(loss=GaussianNLL())
    assert "kl_a" in [layer.name for layer in vae.levels[1].stage.layers]
    x = tf.constant(_x())
    loss, values = vae.compute_objective((x, x), training=False)
    t = vae.trace(x, x, num_samples=1)
    np.testing.assert_allclose(
        float(loss), float(values["reconstruction"] + objectives.Objective.kl_penalty(t)),
        rtol=1e-6)


def test_dict_inputs_by_input_name():
    x_in = keras.Input((D,), name="pixels")
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(x_in))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(D)(z))
    vae.compile(loss=GaussianNLL())
    x = _x()
    history = vae.fit({"pixels": x}, x, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    ll = vae.log_likelihood({"pixels": x}, num_samples=4, y=x)
    assert ll.shape == (len(x),) and np.isfinite(ll).all()
    np.testing.assert_array_equal(vae.reconstruct({"pixels": x}),
                                  vae.reconstruct(x))
    with pytest.raises(ValueError, match=r"lacks \['pixels'\]"):
        vae.fit({"x": x}, x, epochs=1, verbose=0)


def test_activity_losses_are_the_datas_not_the_pseudo_inputs():
    x_in = keras.Input((D,), name="x")
    trunk = keras.layers.Dense(
        8, activity_regularizer=keras.regularizers.L2(1.0), name="trunk")
    prior = keras_vae.priors.VampPrior(num_pseudo_inputs=3, seed=0)
    q = keras_vae.KLRegularizer(prior=prior)(
        keras_vae.GaussianEncoderHead(2)(trunk(x_in)))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(D)(z))
    vae.compile(loss=GaussianNLL())
    prior.set_pseudo_inputs(np.full((3, D), 5.0, "float32"))  # far from x
    x = tf.constant(_x(6))
    vae.compute_objective((x, x), training=True)
    want = float(tf.reduce_sum(trunk(x) ** 2) / 6)
    np.testing.assert_allclose([float(v) for v in trunk.losses], [want],
                               rtol=1e-5)


def test_conditional_export_with_more_parameters_than_data(tmp_path):
    x_in, y_in = keras.Input((D,), name="x"), keras.Input((3,), name="label")
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(
        keras.layers.Concatenate()([x_in, y_in])))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    out = keras.layers.Dense(GaussianNLL.params_size((D,), learned_scale=True))(
        keras.layers.Concatenate()([z, y_in]))
    vae = keras_vae.VAEModel([x_in, y_in], out)
    vae.compile(loss=GaussianNLL(scale=None))  # decoder emits 2 * D values
    x = _x(6)
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]]
    path = vae.export_serving(os.path.join(tmp_path, "m"),
                              log_likelihood_samples=2000)
    served = tf.saved_model.load(path)
    scores = served.signatures["log_likelihood"](
        x=x, input_1=y, targets=x)["log_likelihood"].numpy()
    # The signature's draws (fixed seeds, chunks of 16) re-run in this
    # process through the model's own trace: the same numbers.
    from keras_vae.models.export import LOG_LIKELIHOOD_SEED
    from keras_vae.models.programs import SAMPLES_PER_CHUNK

    def chunk(k, index):
        seed = derive_seed(LOG_LIKELIHOOD_SEED, index)
        return vae.trace([x, y], x, num_samples=k, seed=seed).log_weights()

    same = objectives.chunked_logmeanexp(chunk, 2000, SAMPLES_PER_CHUNK)
    np.testing.assert_allclose(scores, same, rtol=1e-5)
    # Other draws (the model's log_likelihood, K = 2000) agree to Monte
    # Carlo error: an untrained posterior gives heavy-tailed weights.
    want = vae.log_likelihood([x, y], num_samples=2000, y=x, seed=0)
    assert scores.shape == (6,) and np.isfinite(scores).all()
    assert np.corrcoef(scores, want)[0, 1] > 0.95


@pytest.mark.parametrize("kl_kwargs", [{"free_bits": 0.5}, {"capacity": 2.0}])
def test_iwae_refuses_free_bits_and_capacity(kl_kwargs):
    x_in = keras.Input((D,))
    q = keras_vae.KLRegularizer(name="shaped", **kl_kwargs)(
        keras_vae.GaussianEncoderHead(2)(x_in))
    z = keras_vae.ReparameterizedSample()(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(D)(z))
    with pytest.raises(ValueError, match=r"objective='iwae'.*\['shaped'\]"):
        vae.compile(loss=GaussianNLL(), objective="iwae")
    vae.compile(loss=GaussianNLL(), objective="elbo")
