import numpy as np
import pytest
import tensorflow as tf

from keras_vae import GaussianEncoderHead
from tests.helpers import run_layer_test

FEATURES = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")


@pytest.mark.parametrize("covariance", ["diag", "full"])
@pytest.mark.parametrize("param", ["softplus", "log_variance"])
def test_shared_layer_checks(covariance, param):
    latent = 3
    scale_shape = (6, latent) if covariance == "diag" else (6, latent, latent)
    run_layer_test(
        GaussianEncoderHead,
        {"latent_dim": latent, "covariance": covariance, "min_scale": 1e-3,
         "scale_parameterization": param, "max_abs_log_variance": 15.0},
        FEATURES,
        expected_output_shape=((6, latent), scale_shape),
        # Kernel and bias of the loc and of the scale projections.
        expected_num_trainable_weights=4, expected_num_non_trainable_weights=0,
        expected_num_seed_generators=0, expected_num_losses=0,
    )


def test_image_features_are_flattened():
    feats = np.random.default_rng(1).normal(size=(2, 4, 4, 3)).astype("float32")
    loc, scale = GaussianEncoderHead(latent_dim=2)(feats)
    assert loc.shape == (2, 2) and scale.shape == (2, 2)


def test_diag_scale_is_softplus_plus_floor():
    head = GaussianEncoderHead(latent_dim=4, min_scale=0.05,
                               scale_parameterization="softplus")
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


@pytest.mark.parametrize("param", ["softplus", "log_variance"])
@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_extreme_features_stay_finite_with_finite_gradients(covariance, param):
    head = GaussianEncoderHead(latent_dim=3, covariance=covariance,
                               scale_parameterization=param)
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


def test_log_variance_scale_is_exp_half_clipped_plus_floor():
    """The default: r is log σ² (the keras.io pattern), clipped to [-b, b]."""
    head = GaussianEncoderHead(latent_dim=4, min_scale=0.05,
                               max_abs_log_variance=3.0)
    assert head.scale_parameterization == "log_variance"
    feats = FEATURES * 4.0  # some pre-activations beyond the clip
    _, scale = head(feats)
    raw = feats @ head.scale_dense.kernel.numpy() + head.scale_dense.bias.numpy()
    assert np.any(np.abs(raw) > 3.0)
    want = np.exp(0.5 * np.clip(raw, -3.0, 3.0)) + 0.05
    np.testing.assert_allclose(scale, want, rtol=1e-5)
    # At zero weights the posterior starts at the prior's scale (≈ 1).
    _, scale0 = GaussianEncoderHead(
        2, kernel_initializer="zeros", min_scale=1e-4)(FEATURES)
    np.testing.assert_allclose(scale0, 1.0 + 1e-4, rtol=1e-6)


@pytest.mark.parametrize("param", ["softplus", "log_variance"])
@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_raw_scale_params_closed_form_and_round_trip(param, covariance):
    head = GaussianEncoderHead(3, covariance=covariance,
                               scale_parameterization=param)
    head(FEATURES)
    if covariance == "diag":
        target = np.array([[0.01, 0.7, 30.0]], "float32")
        raw = head.raw_scale_params(target).numpy()
        if param == "log_variance":  # closed form: log (σ - floor)²
            np.testing.assert_allclose(
                raw, 2 * np.log(target - head.min_scale), rtol=1e-5)
        else:  # softplus⁻¹(σ - floor) = log(expm1(σ - floor))
            np.testing.assert_allclose(
                raw, np.log(np.expm1(target - head.min_scale)), rtol=1e-5)
    else:
        target = np.array([[[0.5, 0, 0], [0.3, 2.0, 0], [-1.0, 0.2, 0.1]]],
                          "float32")
        raw = head.raw_scale_params(target)
        head.scale_dense.kernel.assign(np.zeros_like(head.scale_dense.kernel))
        head.scale_dense.bias.assign(raw[0])
        _, scale = head(FEATURES[:1])
        np.testing.assert_allclose(scale, target, rtol=1e-5, atol=1e-6)


def test_bad_parameterisation_is_named():
    with pytest.raises(ValueError, match=r"`scale_parameterization`.*"
                                         r"Received: scale_parameterization='exp'"):
        GaussianEncoderHead(2, scale_parameterization="exp")
    with pytest.raises(ValueError, match=r"`max_abs_log_variance`.*"
                                         r"Received: max_abs_log_variance=0"):
        GaussianEncoderHead(2, max_abs_log_variance=0)
