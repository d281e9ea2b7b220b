import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.losses import PerceptualDistance, vgg16_lpips_features
from keras_vae.losses.vgg16_lpips import LPIPS_VGG16_LAYERS, VGG16Preprocessing

SHAPE = (8, 8, 3)


def feature_model(batch_norm=False, seed=0):
    """Three feature outputs: (B, 8, 8, 4), (B, 4, 4, 6) and (B, 5)."""
    init = keras.initializers.RandomNormal(0.0, 0.5, seed=seed)
    x = keras.Input(SHAPE)
    h1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                             kernel_initializer=init, name="f1")(x)
    h = h1
    if batch_norm:
        h = keras.layers.BatchNormalization(name="bn")(h)
    h2 = keras.layers.Conv2D(6, 3, strides=2, padding="same",
                             kernel_initializer=init, name="f2")(h)
    h3 = keras.layers.Dense(5, kernel_initializer=init, name="f3")(
        keras.layers.GlobalAveragePooling2D()(h2))
    return keras.Model(x, [h1, h2, h3])


def lpips_numpy(feats_x, feats_y, weights=None, eps=1e-10):
    """LPIPS re-derived: unit-normalise channels, squared difference,
    (weighted) sum over channels, mean over positions, sum over outputs."""
    total = 0.0
    for k, (fx, fy) in enumerate(zip(feats_x, feats_y)):
        fx, fy = np.asarray(fx, np.float64), np.asarray(fy, np.float64)
        ux = fx / (np.sqrt((fx ** 2).sum(-1, keepdims=True)) + eps)
        uy = fy / (np.sqrt((fy ** 2).sum(-1, keepdims=True)) + eps)
        w = np.ones(fx.shape[-1]) if weights is None else weights[k]
        per_position = ((ux - uy) ** 2 * w).sum(-1)
        total = total + per_position.reshape(len(fx), -1).mean(-1)
    return total


def images(n=4, seed=0):
    return np.random.default_rng(seed).uniform(
        -1, 1, (n,) + SHAPE).astype("float32")


@pytest.mark.parametrize("weighted", [False, True])
def test_distance_equals_lpips_in_numpy(weighted):
    model = feature_model()
    rng = np.random.default_rng(1)
    weights = ([rng.uniform(0, 2, c) for c in (4, 6, 5)] if weighted
               else None)
    loss = PerceptualDistance(model, weights=weights)
    x, y = images(seed=0), images(seed=1)
    want = lpips_numpy([f.numpy() for f in model(x)],
                       [f.numpy() for f in model(y)], weights)
    got = loss.distance(x, y).numpy()
    assert got.shape == (4,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # As a Keras loss: the batch mean.
    np.testing.assert_allclose(float(loss(x, y)), want.mean(), rtol=1e-5)
    # Zero on identical inputs, symmetric.
    np.testing.assert_array_equal(loss.distance(x, x).numpy(), 0.0)
    np.testing.assert_allclose(loss.distance(y, x).numpy(), got, rtol=1e-6)


def test_feature_model_is_frozen_through_a_fit_step():
    features = feature_model(batch_norm=True)
    loss = PerceptualDistance(features)
    assert not features.trainable and not features.trainable_weights
    before = [w.numpy().copy() for w in features.weights]
    x_in = keras.Input(SHAPE)
    out = keras.layers.Conv2D(3, 3, padding="same")(x_in)
    model = keras.Model(x_in, out)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss,
                  jit_compile=True)
    start = [w.numpy().copy() for w in model.trainable_weights]
    x = images(8)
    model.fit(x, x, batch_size=8, epochs=2, verbose=0)
    # The feature model's weights and batch-norm statistics never move.
    for a, w in zip(before, features.weights):
        np.testing.assert_array_equal(a, w.numpy())
    assert not any(w is v for w in features.weights
                   for v in model.trainable_weights)
    assert any(not np.array_equal(a, w.numpy())
               for a, w in zip(start, model.trainable_weights))


def test_gradient_is_finite_where_features_are_all_zero():
    x = keras.Input(SHAPE)
    dead = keras.layers.Conv2D(
        4, 1, activation="relu", bias_initializer=keras.initializers.Constant(
            -100.0))(x)
    loss = PerceptualDistance(keras.Model(x, dead))
    y_pred = tf.Variable(images(2, seed=3))
    with tf.GradientTape() as tape:
        value = loss(images(2), y_pred)
    grad = tape.gradient(value, y_pred).numpy()
    assert float(value) == 0.0 and np.all(np.isfinite(grad))


def test_mixed_precision_feature_model_gives_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = feature_model()
    keras.mixed_precision.set_global_policy("float32")
    loss = PerceptualDistance(model)
    d = loss.distance(images(), images(seed=1))
    assert d.dtype == tf.float32 and np.all(np.isfinite(d.numpy()))


def test_feature_model_that_does_not_fit_the_data_is_refused():
    loss = PerceptualDistance(feature_model())
    with pytest.raises(ValueError, match=r"`feature_model` takes inputs of "
                       r"shape \(None, 8, 8, 3\).*\(2, 16, 16, 3\)"):
        loss(np.zeros((2, 16, 16, 3)), np.zeros((2, 16, 16, 3)))
    with pytest.raises(ValueError, match="differ in shape"):
        loss(np.zeros((2,) + SHAPE), np.zeros((2, 8, 8, 1)))


@pytest.mark.parametrize("weights, match", [
    ([np.ones(4), np.ones(6)], "3 vectors"),
    ([np.ones(4), np.ones(5), np.ones(5)], "vector 1 of length 6"),
    ([np.ones(4), -np.ones(6), np.ones(5)], "non-negative"),
    ("ones", "non-negative"),
])
def test_bad_weights_are_named(weights, match):
    with pytest.raises(ValueError, match=rf"argument `weights`.*{match}"):
        PerceptualDistance(feature_model(), weights=weights)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="argument `feature_model`"):
        PerceptualDistance(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="argument `epsilon`"):
        PerceptualDistance(feature_model(), epsilon=-1.0)


def test_config_round_trip_and_keras_file_keep_the_feature_model():
    weights = [np.full(c, 0.5) for c in (4, 6, 5)]
    loss = PerceptualDistance(feature_model(), weights=weights,
                              epsilon=1e-8, name="lpips")
    config = loss.get_config()
    assert config["epsilon"] == 1e-8 and config["weights"][1] == [0.5] * 6
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(loss))
    assert type(revived) is PerceptualDistance
    assert revived.get_config() == config
    assert not revived.feature_model.trainable
    # A model compiled with the loss saves the feature model's weights.
    x_in = keras.Input(SHAPE)
    model = keras.Model(x_in, keras.layers.Conv2D(3, 1)(x_in))
    model.compile(optimizer="sgd", loss=loss)
    x = images(4)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.loss) is PerceptualDistance
    for a, b in zip(loss.feature_model.weights,
                    loaded.loss.feature_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(loaded.evaluate(x, x[::-1], verbose=0),
                               model.evaluate(x, x[::-1], verbose=0),
                               rtol=1e-6)


def test_vgg16_preprocessing_is_caffe_style():
    x = images(2)
    got = VGG16Preprocessing((-1.0, 1.0))(x).numpy()
    x255 = (x.astype(np.float64) + 1.0) * 127.5
    want = x255[..., ::-1] - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    got01 = VGG16Preprocessing((0.0, 1.0))((x + 1) / 2).numpy()
    np.testing.assert_allclose(got01, want, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="argument `input_range`"):
        VGG16Preprocessing((1.0, -1.0))


def test_vgg16_lpips_features_layers_and_shapes():
    model = vgg16_lpips_features(weights=None, input_shape=(32, 32, 3))
    assert model.output_names == list(LPIPS_VGG16_LAYERS) == [
        "block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3",
        "block5_conv3"]
    assert [tuple(o.shape) for o in model.outputs] == [
        (None, 32, 32, 64), (None, 16, 16, 128), (None, 8, 8, 256),
        (None, 4, 4, 512), (None, 2, 2, 512)]
    assert not model.trainable and not model.trainable_weights
    assert model.layers[1].name == "vgg16_preprocessing"
    loss = PerceptualDistance(model)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3))
    d = loss.distance(x, x[::-1]).numpy()
    assert d.shape == (2,) and np.all(d > 0)
    np.testing.assert_array_equal(loss.distance(x, x).numpy(), 0.0)
    with pytest.raises(ValueError, match="argument `input_shape`"):
        vgg16_lpips_features(weights=None, input_shape=(32, 32, 1))
    with pytest.raises(ValueError, match="argument `layers`"):
        vgg16_lpips_features(weights=None, layers=["block9_conv1"])
