import numpy as np
import pytest
import tensorflow as tf

from keras_vae import GaussianEncoderHead
from tests.helpers import run_layer_test

FEATURES = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_shared_layer_checks(covariance):
    latent = 3
    scale_shape = (6, latent) if covariance == "diag" else (6, latent, latent)
    run_layer_test(
        GaussianEncoderHead,
        {"latent_dim": latent, "covariance": covariance, "min_scale": 1e-3},
        FEATURES,
        expected_output_shape=((6, latent), scale_shape),
    )


def test_image_features_are_flattened():
    feats = np.random.default_rng(1).normal(size=(2, 4, 4, 3)).astype("float32")
    loc, scale = GaussianEncoderHead(latent_dim=2)(feats)
    assert loc.shape == (2, 2) and scale.shape == (2, 2)


def test_diag_scale_is_softplus_plus_floor():
    head = GaussianEncoderHead(latent_dim=4, min_scale=0.05)
    loc, scale = head(FEATURES)
    raw = FEATURES @ head.scale_dense.kernel.numpy() + head.scale_dense.bias.numpy()
    np.testing.assert_allclose(scale, np.log1p(np.exp(raw)) + 0.05, rtol=1e-5)
    want_loc = FEATURES @ head.loc_dense.kernel.numpy() + head.loc_dense.bias.numpy()
    np.testing.assert_allclose(loc, want_loc, rtol=1e-5, atol=1e-6)


def test_full_scale_is_lower_triangular_with_positive_diagonal():
    _, scale = GaussianEncoderHead(latent_dim=4, covariance="full",
                                   min_scale=0.01)(FEATURES)
    scale = scale.numpy()
    np.testing.assert_array_equal(scale, np.tril(scale))
    assert np.all(np.diagonal(scale, axis1=1, axis2=2) >= 0.01)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_extreme_features_stay_finite_with_finite_gradients(covariance):
    head = GaussianEncoderHead(latent_dim=3, covariance=covariance)
    feats = tf.constant(np.full((2, 5), 1e4, "float32") * [[1], [-1]])
    head(feats)
    with tf.GradientTape() as tape:
        loc, scale = head(feats)
        total = tf.reduce_sum(loc) + tf.reduce_sum(scale)
    grads = tape.gradient(total, head.trainable_weights)
    scale = np.asarray(scale)
    diag = scale if covariance == "diag" else np.diagonal(scale, 0, 1, 2)
    assert np.all(np.isfinite(scale)) and np.all(diag >= head.min_scale)
    for g in grads:
        assert np.all(np.isfinite(g))


def test_params_size():
    assert GaussianEncoderHead.params_size(8) == 16
    assert GaussianEncoderHead.params_size(3, "full") == 3 + 6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"latent_dim": 0}, r"argument `latent_dim`.*Received: latent_dim=0"),
        ({"latent_dim": 2.5}, r"argument `latent_dim`"),
        ({"latent_dim": 2, "min_scale": -1.0},
         r"argument `min_scale`.*Received: min_scale=-1.0"),
        ({"latent_dim": 2, "covariance": "banana"},
         r"argument `covariance`.*'diag', 'full'.*Received: covariance='banana'"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianEncoderHead(**kwargs)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_raw_scale_params_inverts_the_scale_map(covariance):
    head = GaussianEncoderHead(latent_dim=3, covariance=covariance,
                               min_scale=0.01)
    _, scale = head(FEATURES)
    raw = head.scale_dense(FEATURES)
    np.testing.assert_allclose(head.raw_scale_params(scale), raw, rtol=1e-3,
                               atol=1e-4)


def test_full_covariance_trains_under_xla_with_a_partial_last_batch():
    import keras

    import keras_vae
    from keras_vae.losses import GaussianNLL

    x = np.random.default_rng(0).normal(size=(100, 4)).astype("float32")
    x_in = keras.Input((4,))
    q = keras_vae.KLRegularizer()(
        GaussianEncoderHead(2, covariance="full")(x_in))
    z = keras_vae.ReparameterizedSample()(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(4)(z))
    vae.compile(loss=GaussianNLL(), jit_compile=True)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(32)  # 32, 32, 32, 4
    hist = vae.fit(ds, epochs=2, verbose=0).history
    assert np.isfinite(hist["loss"]).all()
