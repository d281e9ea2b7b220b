import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae.losses import BernoulliNLL, GaussianNLL
from tests.builders import mlp_vae


def compiled(vae, lr=3e-3, **kwargs):
    vae.compile(optimizer=keras.optimizers.Adam(lr), loss=BernoulliNLL(),
                **kwargs)
    return vae


def test_fit_lowers_the_loss_and_reports_the_metrics(data):
    vae = compiled(mlp_vae())
    ds = tf.data.Dataset.from_tensor_slices(data).shuffle(512, seed=0).batch(64)
    hist = vae.fit(ds, epochs=6, verbose=0).history
    assert set(hist) == {"loss", "elbo", "reconstruction", "kl"}
    assert hist["loss"][-1] < hist["loss"][0] - 2.0
    # loss = -elbo for beta = 1; elbo = -(reconstruction + kl).
    np.testing.assert_allclose(hist["loss"], -np.array(hist["elbo"]), rtol=1e-5)
    np.testing.assert_allclose(
        hist["elbo"], -(np.array(hist["reconstruction"]) + hist["kl"]), rtol=1e-5
    )
    assert vae.jit_compile is True


def test_validation_data_and_evaluate_report_the_metrics(data):
    # The data forms x / (x, y) / (x, y, w) agree number for number in
    # the model harness (tests/model_harness.py).
    vae = compiled(mlp_vae())
    hist = vae.fit(data, batch_size=128, epochs=1, validation_data=(data[:64],),
                   verbose=0).history
    assert {"val_loss", "val_elbo", "val_kl", "val_reconstruction"} <= set(hist)
    result = vae.evaluate(data, batch_size=128, verbose=0, return_dict=True)
    assert set(result) == {"loss", "elbo", "reconstruction", "kl"}


@pytest.mark.parametrize("objective, k", [("elbo", 4), ("iwae", 4)])
def test_multi_sample_objectives_train(data, objective, k):
    vae = compiled(mlp_vae(), objective=objective, num_samples=k)
    hist = vae.fit(data, batch_size=64, epochs=3, verbose=0).history
    assert hist["loss"][-1] < hist["loss"][0]
    if objective == "iwae":
        # The IWAE bound is above the ELBO estimate from the same samples.
        assert -hist["loss"][-1] >= hist["elbo"][-1] - 1e-4


@pytest.mark.slow
def test_elbo_below_log_likelihood_and_spread_shrinks_with_k(data):
    vae = compiled(mlp_vae())
    vae.fit(data, batch_size=64, epochs=8, verbose=0)
    x = data[:100]
    elbo = vae.elbo(x, num_samples=10)
    ll = vae.log_likelihood(x, num_samples=500)
    assert elbo.shape == ll.shape == (100,)
    assert elbo.mean() <= ll.mean()
    spreads = []
    for k in (1, 10, 200):
        runs = np.stack([vae.log_likelihood(x[:20], num_samples=k)
                         for _ in range(5)])
        spreads.append(runs.std(0).mean())
    assert spreads[0] > spreads[1] > spreads[2], spreads


def test_log_likelihood_chunks_agree_with_one_chunk(data, monkeypatch):
    from keras_vae.models import inference

    vae = compiled(mlp_vae())
    x = data[:8]
    whole = vae.log_likelihood(x, num_samples=64, batch_size=8, seed=3)
    again = vae.log_likelihood(x, num_samples=64, batch_size=8, seed=3)
    np.testing.assert_array_equal(whole, again)  # a seed fixes the estimate
    monkeypatch.setattr(inference, "_ROWS_PER_CHUNK", 8 * 16)
    chunked = vae.log_likelihood(x, num_samples=64, batch_size=8, seed=3)
    # Chunks of 16 samples draw other noise (each chunk its own seed); both
    # estimate the same quantity.
    np.testing.assert_allclose(whole, chunked, atol=0.5)
    assert not np.array_equal(whole, chunked)


def test_encode_decode_reconstruct_sample(data):
    vae = compiled(mlp_vae(latent=3))
    loc, scale = vae.encode(data[:5])
    assert loc.shape == scale.shape == (5, 3) and np.all(scale > 0)
    params = vae.decode(loc)
    assert params.shape == (5, 32)
    rec = vae.reconstruct(data[:5])
    np.testing.assert_allclose(rec, 1 / (1 + np.exp(-params)), rtol=1e-5)
    s1, s2 = vae.sample(4, seed=1), vae.sample(4, seed=1)
    np.testing.assert_array_equal(s1, s2)
    assert s1.shape == (4, 32) and np.all((s1 >= 0) & (s1 <= 1))
    assert not np.array_equal(vae.sample(4, seed=2), s1)


def test_conv_encoder_and_decoder():
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(64, 8, 8, 1)) < 0.3).astype("float32")
    x_in = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x_in)
    q = keras_vae.GaussianEncoderHead(latent_dim=4)(h)  # flattens (4, 4, 8)
    z = keras_vae.ReparameterizedSample()(keras_vae.KLRegularizer()(q))
    h = keras.layers.Dense(4 * 4 * 8, activation="relu")(z)
    h = keras.layers.Reshape((4, 4, 8))(h)
    logits = keras.layers.Conv2DTranspose(
        BernoulliNLL.params_size((1,)), 3, strides=2, padding="same")(h)
    vae = compiled(keras_vae.VAEModel(x_in, logits))
    hist = vae.fit(x, batch_size=32, epochs=2, verbose=0).history
    assert np.isfinite(hist["loss"]).all()
    assert vae.log_likelihood(x[:4], num_samples=20).shape == (4,)
    assert vae.sample(2, seed=0).shape == (2, 8, 8, 1)


def test_sequential_encoder_and_decoder_pieces(data):
    encoder = keras.Sequential([keras.layers.Dense(16, activation="relu")])
    decoder = keras.Sequential([keras.layers.Dense(16, activation="relu"),
                                keras.layers.Dense(32)])
    x_in = keras.Input((32,))
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(encoder(x_in)))
    vae = compiled(keras_vae.VAEModel(
        x_in, decoder(keras_vae.ReparameterizedSample()(q))))
    hist = vae.fit(data, batch_size=64, epochs=2, verbose=0).history
    assert hist["loss"][-1] < hist["loss"][0]


def test_conditional_vae_with_two_inputs(data, tmp_path):
    label = (data[:, :1] > 0.5).astype("float32")
    x_in, y_in = keras.Input((32,), name="x"), keras.Input((1,), name="label")
    h = keras.layers.Dense(16, activation="relu")(
        keras.layers.Concatenate()([x_in, y_in]))
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(h))
    z = keras_vae.ReparameterizedSample()(q)
    h = keras.layers.Dense(16, activation="relu")(
        keras.layers.Concatenate()([z, y_in]))
    vae = compiled(keras_vae.VAEModel([x_in, y_in], keras.layers.Dense(32)(h)))
    assert vae.graph.condition_index == (1,)
    ds = tf.data.Dataset.from_tensor_slices(((data, label), data)).batch(64)
    hist = vae.fit(ds, epochs=2, verbose=0).history
    assert hist["loss"][-1] < hist["loss"][0]
    assert vae.sample(3, seed=0, condition=np.ones((1, 1))).shape == (3, 32)
    assert vae.log_likelihood([data[:5], label[:5]], 10, y=data[:5]).shape == (5,)
    with pytest.raises(ValueError, match="pass \\(inputs, targets\\)"):
        vae.fit(tf.data.Dataset.from_tensor_slices((data, label)).batch(8)
                .map(lambda a, b: ((a, b),)), epochs=1, verbose=0)
    vae.save(tmp_path / "cvae.keras")
    loaded = keras.saving.load_model(tmp_path / "cvae.keras")
    np.testing.assert_array_equal(
        loaded.predict([data[:4], label[:4]], verbose=0),
        vae.predict([data[:4], label[:4]], verbose=0),
    )
    np.testing.assert_array_equal(
        loaded.sample(2, seed=1, condition=label[:1]),
        vae.sample(2, seed=1, condition=label[:1]),
    )


def test_gaussian_likelihood_with_learned_scale():
    x = np.random.default_rng(0).normal(size=(256, 6)).astype("float32")
    x_in = keras.Input((6,))
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(x_in))
    z = keras_vae.ReparameterizedSample()(q)
    params = keras.layers.Dense(GaussianNLL.params_size((6,), learned_scale=True))(z)
    vae = keras_vae.VAEModel(x_in, params)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=GaussianNLL(scale=None))
    hist = vae.fit(x, batch_size=64, epochs=3, verbose=0).history
    assert hist["loss"][-1] < hist["loss"][0]


def test_mixed_precision_training_stays_finite(data):
    keras.mixed_precision.set_global_policy("mixed_float16")
    vae = compiled(mlp_vae())
    hist = vae.fit(data, batch_size=64, epochs=2, verbose=0).history
    assert np.isfinite(hist["loss"]).all()
    assert vae.log_likelihood(data[:4], num_samples=10).dtype == np.float32


def test_kl_weight_and_regularisation_losses_enter_the_loss(data):
    x_in = keras.Input((32,))
    h = keras.layers.Dense(8, kernel_regularizer=keras.regularizers.L2(1.0))(x_in)
    q = keras_vae.KLRegularizer(weight=0.0)(keras_vae.GaussianEncoderHead(2)(h))
    vae = compiled(keras_vae.VAEModel(
        x_in, keras.layers.Dense(32)(keras_vae.ReparameterizedSample()(q))))
    r = vae.evaluate(data, batch_size=512, verbose=0, return_dict=True)
    l2 = float(np.sum(vae.layers[1].kernel.numpy() ** 2))
    np.testing.assert_allclose(r["loss"], r["reconstruction"] + l2, rtol=1e-4)


# ------------------------------------------------------------ bad input
def _parts():
    x_in = keras.Input((4,))
    q = keras_vae.GaussianEncoderHead(2)(x_in)
    return x_in, q


def test_no_sampler_is_a_clear_error():
    x_in, q = _parts()
    with pytest.raises(ValueError, match="no latent sampling layer"):
        keras_vae.VAEModel(x_in, keras.layers.Dense(4)(q[0]))


def test_two_samplers_is_a_clear_error():
    x_in, q = _parts()
    q = keras_vae.KLRegularizer()(q)
    z1 = keras_vae.ReparameterizedSample()(q)
    z2 = keras_vae.ReparameterizedSample()(q)
    out = keras.layers.Dense(4)(keras.layers.Concatenate()([z1, z2]))
    with pytest.raises(ValueError, match="feeds 2 sampling layers"):
        keras_vae.VAEModel(x_in, out)


def test_missing_kl_regularizer_is_a_clear_error():
    x_in, q = _parts()
    with pytest.raises(ValueError, match="KLRegularizer"):
        keras_vae.VAEModel(
            x_in, keras.layers.Dense(4)(keras_vae.ReparameterizedSample()(q)))


def test_compile_arguments_are_checked():
    vae = mlp_vae()
    with pytest.raises(ValueError, match=r"argument `loss`.*Received: loss='mse'"):
        vae.compile(loss="mse")
    with pytest.raises(ValueError, match=r"argument `objective`"):
        vae.compile(loss=BernoulliNLL(), objective="vimco")
    with pytest.raises(ValueError, match=r"argument `num_samples`"):
        vae.compile(loss=BernoulliNLL(), num_samples=0)


def test_wrong_decoder_width_names_the_loss(data):
    x_in = keras.Input((32,))
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(x_in))
    vae = compiled(keras_vae.VAEModel(
        x_in, keras.layers.Dense(31)(keras_vae.ReparameterizedSample()(q))))
    with pytest.raises(ValueError, match="BernoulliNLL.*params_size"):
        vae.fit(data, batch_size=64, epochs=1, verbose=0)


def test_uncompiled_sample_says_compile():
    with pytest.raises(ValueError, match="not compiled"):
        mlp_vae().sample(2)


@pytest.mark.slow
def test_keras_applications_backbone_as_encoder():
    """A model nobody wrote for this package: MobileNetV3Small features."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 32, 32, 3)).astype("float32")
    backbone = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), include_top=False, weights=None,
        pooling="avg", include_preprocessing=False, minimalistic=True,
    )
    x_in = keras.Input((32, 32, 3))
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(8)(backbone(x_in)))
    z = keras_vae.ReparameterizedSample()(q)
    h = keras.layers.Reshape((4, 4, 8))(keras.layers.Dense(4 * 4 * 8)(z))
    for _ in range(3):
        h = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same",
                                         activation="relu")(h)
    params = keras.layers.Conv2D(GaussianNLL.params_size((3,)), 1)(h)
    vae = keras_vae.VAEModel(x_in, params)
    # Without XLA: compiling MobileNet's train step takes ~1 min on 2 CPUs;
    # XLA itself is exercised by every other test.
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), loss=GaussianNLL(0.1),
                jit_compile=False)
    hist = vae.fit(x, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(hist["loss"]).all()
    assert vae.sample(2, seed=0).shape == (2, 32, 32, 3)
