"""Latents of any shape: a (h, w, C) feature-map latent.

The spatial model and a flat model of h·w·C latents with the same weights
(the flat head's kernel is the block-diagonal kron(I_hw, W) of the 1x1
projection) are the same model: with the same seed they draw the same
noise, so KL, ELBO, IWAE and log p(x) agree to float tolerance.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae.losses import GaussianNLL

H, W, F, C, D = 2, 3, 5, 2, 7
RNG = np.random.default_rng(0)
X = RNG.normal(size=(48, H, W, F)).astype("float32")


def spatial_vae(size=(H, W)):
    x_in = keras.Input(size + (F,), name="x")
    feats = keras.layers.Dense(F, activation="tanh", name="feats")(x_in)
    q = keras_vae.GaussianEncoderHead(C, flatten=False, name="head")(feats)
    q = keras_vae.KLRegularizer(name="kl")(q)
    z = keras_vae.ReparameterizedSample(seed=3, name="z")(q)
    out = keras.layers.Dense(D, name="dec")(keras.layers.Flatten()(z))
    return keras_vae.VAEModel(x_in, out, name="spatial")


def flat_vae():
    x_in = keras.Input((H, W, F), name="x")
    feats = keras.layers.Dense(F, activation="tanh", name="feats")(x_in)
    q = keras_vae.GaussianEncoderHead(H * W * C, name="head")(feats)
    q = keras_vae.KLRegularizer(name="kl")(q)
    z = keras_vae.ReparameterizedSample(seed=3, name="z")(q)
    out = keras.layers.Dense(D, name="dec")(z)
    return keras_vae.VAEModel(x_in, out, name="flat")


@pytest.fixture(scope="module")
def pair():
    spatial, flat = spatial_vae(), flat_vae()
    for vae in (spatial, flat):
        vae.compile(loss=GaussianNLL(scale=2.0))
    for layer in spatial.layers:
        if not layer.weights:
            continue
        target = flat.get_layer(layer.name)
        if layer.name == "head":
            for dense in ("loc_dense", "scale_dense"):
                src, dst = getattr(layer, dense), getattr(target, dense)
                kernel = RNG.normal(scale=0.5, size=src.kernel.shape)
                bias = RNG.normal(scale=0.3, size=src.bias.shape)
                src.kernel.assign(kernel)
                src.bias.assign(bias)
                dst.kernel.assign(np.kron(np.eye(H * W), kernel))
                dst.bias.assign(np.tile(bias, H * W))
        else:
            target.set_weights(layer.get_weights())
    return spatial, flat


def _y(vae, n):
    return np.zeros((n, D), "float32") + 0.1


def test_head_keeps_the_axes():
    loc, scale = keras_vae.GaussianEncoderHead(C, flatten=False)(X[:4])
    assert loc.shape == scale.shape == (4, H, W, C)
    assert np.all(scale.numpy() > 0)
    loc, _ = keras_vae.GaussianEncoderHead(C, flatten=False)(
        keras.Input((None, None, F)))
    assert tuple(loc.shape) == (None, None, None, C)


def test_spatial_equals_flat(pair):
    spatial, flat = pair
    x, y, seed = X[:8], _y(None, 8), tf.constant([1, 2])
    ts = spatial.trace(x, y, num_samples=4, seed=seed)
    tf_ = flat.trace(x, y, num_samples=4, seed=seed)
    assert ts.levels[0].z.shape == (32, H, W, C)
    np.testing.assert_allclose(
        tf.reshape(ts.levels[0].z, (32, -1)), tf_.levels[0].z, rtol=1e-5,
        atol=1e-6)
    for name in ("kl", "elbo", "log_qz", "log_pz", "log_px_z"):
        np.testing.assert_allclose(getattr(ts, name), getattr(tf_, name),
                                   rtol=1e-5, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(ts.log_weights(), tf_.log_weights(),
                               rtol=1e-5, atol=1e-4)
    for method, k in (("log_likelihood", 20), ("elbo", 3)):
        got = getattr(spatial, method)(x, num_samples=k, y=y, seed=5)
        want = getattr(flat, method)(x, num_samples=k, y=y, seed=5)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4,
                                   err_msg=method)


def test_spatial_kl_is_the_closed_form_over_every_axis(pair):
    spatial, _ = pair
    x = X[:6]
    loc, scale = (a.numpy().astype("float64") for a in spatial.encoder(x))
    assert loc.shape == (6, H, W, C)
    want = 0.5 * np.sum(scale**2 + loc**2 - 1 - 2 * np.log(scale),
                        axis=(1, 2, 3))
    t = spatial.trace(x, _y(None, 6), seed=tf.constant([0, 1]))
    np.testing.assert_allclose(t.kl, want, rtol=1e-5)


def test_unknown_size_trains_samples_and_exports(tmp_path):
    """A fully convolutional VAE with a (None, None, C) latent."""
    x_in = keras.Input((None, None, 1), name="x")
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same",
                            activation="relu")(x_in)
    q = keras_vae.KLRegularizer()(
        keras_vae.GaussianEncoderHead(C, flatten=False)(h))
    z = keras_vae.ReparameterizedSample(seed=1)(q)
    h = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same",
                                     activation="relu")(z)
    out = keras.layers.Conv2D(1, 1)(h)
    vae = keras_vae.VAEModel(x_in, out)
    vae.compile(loss=GaussianNLL(scale=0.5))
    data = RNG.normal(size=(32, 8, 8, 1)).astype("float32")
    hist = vae.fit(data, batch_size=16, epochs=2, verbose=0).history
    assert np.isfinite(hist["loss"]).all()
    assert vae.latent_shape == (None, None, C)
    loc, scale = vae.encode(data[:3])
    assert loc.shape == (3, 4, 4, C)
    with pytest.raises(ValueError, match=r"latent_shape.*unknown until run"):
        vae.sample(2, seed=0)
    samples = vae.sample(2, seed=0, latent_shape=(4, 4, C))
    assert samples.shape == (2, 8, 8, 1)
    with pytest.raises(ValueError, match=r"latent_shape.*Received: "
                                         r"latent_shape=\(4, 4\)"):
        vae.sample(2, seed=0, latent_shape=(4, 4))
    # Other image sizes go through the same model.
    assert vae.log_likelihood(
        RNG.normal(size=(2, 12, 12, 1)).astype("float32"),
        num_samples=4).shape == (2,)

    path = vae.export_serving(tmp_path / "sm", log_likelihood_samples=8)
    np.save(tmp_path / "x.npy", data[:3])
    script = tmp_path / "serve.py"
    script.write_text(SERVER)
    subprocess.run(
        [sys.executable, str(script), str(path), str(tmp_path / "x.npy"),
         str(tmp_path / "out.json")],
        check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=300,
    )
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["imported"] == []
    np.testing.assert_allclose(got["loc"], loc, rtol=1e-5, atol=1e-5)
    assert np.shape(got["samples"]) == (2, 8, 8, 1)
    np.testing.assert_allclose(got["samples"],
                               vae.sample(2, seed=7, latent_shape=(4, 4, C)),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["reconstruction"], vae.reconstruct(data[:3]),
                               rtol=1e-5, atol=1e-5)
    assert np.shape(got["params"]) == (3, 8, 8, 1)
    assert np.all(np.isfinite(got["log_likelihood"]))


SERVER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    path, x_path, out_path = sys.argv[1:4]
    sig = tf.saved_model.load(path).signatures
    x = np.load(x_path)
    loc = sig["encode"](x=x)["loc"]
    out = {
        "loc": loc,
        "reconstruction": sig["serving_default"](x=x)["reconstruction"],
        "params": sig["decode"](z=loc)["params"],
        "samples": sig["sample"](num_samples=tf.constant(2),
                                 seed=tf.constant(7),
                                 latent_shape=tf.constant([4, 4, 2]))["samples"],
        "log_likelihood": sig["log_likelihood"](x=x)["log_likelihood"],
        "imported": sorted(m for m in sys.modules if m.startswith("keras_vae")),
    }
    json.dump({k: np.asarray(v).tolist() if not isinstance(v, list) else v
               for k, v in out.items()}, open(out_path, "w"))
    """
)


def test_learned_prior_on_a_spatial_latent_is_per_position():
    prior = keras_vae.priors.LearnedGaussian()
    x_in = keras.Input((H, W, F))
    q = keras_vae.KLRegularizer(prior=prior)(
        keras_vae.GaussianEncoderHead(C, flatten=False)(x_in))
    z = keras_vae.ReparameterizedSample()(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(D)(
        keras.layers.Flatten()(z)))
    vae.compile(loss=GaussianNLL())
    assert tuple(prior.loc.shape) == (H, W, C)
    hist = vae.fit(X, _y(None, len(X)), batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(hist.history["kl"]).all()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"last \(feature\) axis.*\(None, 4, None\)"):
        keras_vae.GaussianEncoderHead(2, flatten=False)(keras.Input((4, None)))
    with pytest.raises(ValueError, match=r"covariance='full'.*\(None, 2, 3, 5\)"):
        keras_vae.GaussianEncoderHead(2, covariance="full", flatten=False)(
            keras.Input((2, 3, 5)))
    with pytest.raises(ValueError, match=r"features of shape \(batch, \.\.\.\)"):
        keras_vae.GaussianEncoderHead(2, flatten=False).build((None,))
    with pytest.raises(ValueError, match=r"flatten.*Received: flatten='no'"):
        keras_vae.GaussianEncoderHead(2, flatten="no")
    mixture = keras_vae.priors.MixtureOfGaussians(3)
    q = keras_vae.GaussianEncoderHead(2, flatten=False)(keras.Input((2, 3, 5)))
    with pytest.raises(ValueError, match=r"MixtureOfGaussians.*flat latents.*"
                                         r"\(batch, \*\(2, 3, 2\)\)"):
        keras_vae.KLRegularizer(prior=mixture)(q)
    with pytest.raises(ValueError, match=r"IAFSample needs a flat latent.*"
                                         r"\(None, 2, 3, 2\)"):
        keras_vae.IAFSample()(list(q))
