"""TensorBoardImages: the image summaries it writes, read back from the
event files and compared pixel by pixel with the model's own outputs."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae.callbacks import TensorBoardImages
from keras_vae.losses import BernoulliNLL

PAD = 128  # the mid-grey padding, round(0.5 * 255)
RNG = np.random.default_rng(0)
IMAGES = (RNG.uniform(size=(32, 4, 4, 1)) < 0.5).astype("float32")


def image_vae(input_shape=(4, 4, 1), jit_compile=False):
    """Images (4, 4, 1) -> latent 2 -> Bernoulli logits of the same shape
    (no XLA by default: it costs compile time, and one test has it)."""
    x_in = keras.Input(input_shape)
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Flatten()(x_in))
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(h))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    logits = keras.layers.Dense(int(np.prod(input_shape)))(z)
    logits = keras.layers.Reshape(input_shape)(logits)
    vae = keras_vae.VAEModel(x_in, logits)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL(),
                jit_compile=jit_compile)
    return vae


def read_images(directory):
    """{tag: [(step, uint8 (H, W, C) image, description)]} of the image
    summaries in the event files of `directory` (TensorFlow only)."""
    out, plugin = {}, {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name:
                    plugin[value.tag] = (
                        value.metadata.plugin_data.plugin_name,
                        value.metadata.summary_description)
                name, description = plugin.get(value.tag, ("", ""))
                if name != "images":
                    continue
                width, height, png = tf.make_ndarray(value.tensor)
                image = tf.io.decode_png(png).numpy()
                assert image.shape[:2] == (int(height), int(width))
                out.setdefault(value.tag, []).append(
                    (event.step, image, description))
    return out


def tile(image, row, col, size=4):
    """The tile at (row, col) of a grid with 1-pixel padding, as [0, 1]."""
    top, left = 1 + row * (size + 1), 1 + col * (size + 1)
    return image[top:top + size, left:left + size] / 255.0


def test_writes_reconstructions_next_to_inputs_and_prior_samples(tmp_path):
    vae = image_vae()
    x = IMAGES[:5]
    cb = TensorBoardImages(tmp_path, x, num_samples=6, ncols=4, seed=3)
    vae.fit(IMAGES, batch_size=16, epochs=2, verbose=0, callbacks=[cb])
    pictures = read_images(tmp_path / "images")
    assert sorted(pictures) == ["reconstructions", "samples"]
    assert [s for s, _, _ in pictures["reconstructions"]] == [0, 1]
    assert [s for s, _, _ in pictures["samples"]] == [0, 1]

    # Rows: inputs 0-3, their reconstructions, input 4, its reconstruction
    # (4 rows x 4 columns of 4x4 tiles, grey).
    _, image, description = pictures["reconstructions"][-1]
    assert image.shape == (4 * 5 + 1, 4 * 5 + 1, 1)
    assert "clipped" in description
    recon = vae.reconstruct(x)  # the weights after the last epoch
    for i in range(5):
        row, col = 2 * (i // 4), i % 4
        np.testing.assert_allclose(tile(image, row, col), x[i], atol=0.5 / 255)
        np.testing.assert_allclose(tile(image, row + 1, col), recon[i],
                                   atol=0.5 / 255 + 1e-6)
    assert np.all(image[0] == PAD) and np.all(image[:, 0] == PAD)
    # The incomplete last block is padding.
    assert np.all(tile(image, 2, 1) == PAD / 255)
    assert np.all(tile(image, 3, 3) == PAD / 255)

    # Samples: 2 rows x 4 columns, the same draws as sample(seed=3).
    _, image, _ = pictures["samples"][-1]
    assert image.shape == (2 * 5 + 1, 4 * 5 + 1, 1)
    samples = vae.sample(6, seed=3)
    for i in range(6):
        np.testing.assert_allclose(tile(image, i // 4, i % 4), samples[i],
                                   atol=0.5 / 255 + 1e-6)


def test_every_n_epochs_and_no_samples_under_xla(tmp_path):
    vae = image_vae(jit_compile=True)  # reconstruct runs XLA-compiled too
    cb = TensorBoardImages(str(tmp_path), IMAGES[:2], every_n_epochs=2,
                           num_samples=0)
    vae.fit(IMAGES, batch_size=32, epochs=3, verbose=0, callbacks=[cb])
    pictures = read_images(tmp_path / "images")
    assert sorted(pictures) == ["reconstructions"]
    assert [s for s, _, _ in pictures["reconstructions"]] == [0, 2]
    # 2 examples: one block of 2 columns.
    assert pictures["reconstructions"][0][1].shape == (2 * 5 + 1, 2 * 5 + 1, 1)


def test_beside_keras_tensorboard_in_the_same_log_dir(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing import (
        plugin_event_accumulator as pea,
    )

    vae = image_vae()
    callbacks = [keras.callbacks.TensorBoard(str(tmp_path), update_freq=1),
                 TensorBoardImages(tmp_path, IMAGES[:4], num_samples=4)]
    vae.fit(IMAGES, batch_size=16, epochs=2, verbose=0, callbacks=callbacks)
    assert sorted(os.listdir(tmp_path)) == ["images", "train"]
    # TensorBoard itself reads the pictures as its image plugin's data...
    acc = pea.EventAccumulator(str(tmp_path / "images"))
    acc.Reload()
    assert sorted(acc.PluginTagToContent("images")) == [
        "reconstructions", "samples"]
    events = acc.Tensors("samples")
    assert [e.step for e in events] == [0, 1]
    width, height, _ = tf.make_ndarray(events[-1].tensor_proto)
    assert (int(height), int(width)) == (6, 21)  # 1 row x 4 columns
    # ... and Keras' callback still wrote its scalars.
    train = pea.EventAccumulator(str(tmp_path / "train"))
    train.Reload()
    assert "epoch_loss" in train.Tags()["tensors"]


def test_flat_data_with_image_shape(tmp_path):
    x_in = keras.Input((12,))
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(x_in))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(12)(z))
    vae.compile(loss=BernoulliNLL(), jit_compile=False)
    x = IMAGES.reshape(-1, 16)[:, :12]
    for image_shape, channels in (((3, 4), 1), ((2, 2, 3), 3)):
        log_dir = tmp_path / str(channels)
        cb = TensorBoardImages(log_dir, x[:3], num_samples=2,
                               image_shape=image_shape)
        vae.fit(x, batch_size=32, epochs=1, verbose=0, callbacks=[cb])
        pictures = read_images(log_dir / "images")
        _, image, _ = pictures["reconstructions"][0]
        h, w = image_shape[:2]
        assert image.shape == (2 * (h + 1) + 1, 3 * (w + 1) + 1, channels)
        np.testing.assert_allclose(
            image[1:1 + h, 1:1 + w] / 255.0,
            x[0].reshape(h, w, channels), atol=0.5 / 255)
        assert pictures["samples"][0][1].shape == (
            h + 2, 2 * (w + 1) + 1, channels)


def test_value_range_maps_and_clips(tmp_path):
    vae = image_vae()
    x = IMAGES[:1] * 255.0  # data in [0, 255]
    cb = TensorBoardImages(tmp_path, x, num_samples=0,
                           value_range=(0.0, 255.0))
    cb.set_model(vae)
    cb.write(7)
    (step, image, _), = read_images(tmp_path / "images")["reconstructions"]
    assert step == 7
    np.testing.assert_array_equal(tile(image, 0, 0), IMAGES[0])
    # The reconstructions (means in (0, 1)) are below 1/255 of the range.
    assert np.all(tile(image, 1, 0) <= 1 / 255)


def fully_convolutional_vae():
    x_in = keras.Input((None, None, 1))
    h = keras.layers.Dense(4, activation="tanh")(x_in)
    q = keras_vae.GaussianEncoderHead(2, flatten=False)(h)
    z = keras_vae.ReparameterizedSample(seed=0)(keras_vae.KLRegularizer()(q))
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(1)(z))
    vae.compile(loss=BernoulliNLL(), jit_compile=False)
    return vae


def test_latent_of_unknown_size_needs_latent_shape(tmp_path):
    vae = fully_convolutional_vae()
    cb = TensorBoardImages(tmp_path / "a", IMAGES[:2], num_samples=3)
    with pytest.raises(ValueError, match="argument `latent_shape`"):
        vae.fit(IMAGES, epochs=1, verbose=0, callbacks=[cb])
    assert int(vae.optimizer.iterations) == 0  # refused before training
    cb = TensorBoardImages(tmp_path / "b", IMAGES[:2], num_samples=3,
                           latent_shape=(4, 4, 2), seed=1)
    vae.fit(IMAGES, batch_size=32, epochs=1, verbose=0, callbacks=[cb])
    (_, image, _), = read_images(tmp_path / "b" / "images")["samples"]
    assert image.shape == (6, 16, 1)
    np.testing.assert_allclose(
        tile(image, 0, 2),
        vae.sample(3, seed=1, latent_shape=(4, 4, 2))[2], atol=0.5 / 255 + 1e-6)


def test_conditional_vae(tmp_path):
    x_in, y_in = keras.Input((4, 4, 1)), keras.Input((2,))
    h = keras.layers.Concatenate()([keras.layers.Flatten()(x_in), y_in])
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(h))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    out = keras.layers.Dense(16)(keras.layers.Concatenate()([z, y_in]))
    vae = keras_vae.VAEModel([x_in, y_in], keras.layers.Reshape((4, 4, 1))(out))
    vae.compile(loss=BernoulliNLL(), jit_compile=False)
    labels = np.eye(2, dtype="float32")[np.arange(32) % 2]
    data = ([IMAGES, labels], IMAGES)
    cb = TensorBoardImages(tmp_path, [IMAGES[:2], labels[:2]], num_samples=2)
    with pytest.raises(ValueError, match="pass `condition=`"):
        vae.fit(*data, epochs=1, verbose=0, callbacks=[cb])
    cb = TensorBoardImages(tmp_path, [IMAGES[:2], labels[:2]], num_samples=2,
                           condition=labels[:1])
    vae.fit(*data, batch_size=32, epochs=1, verbose=0, callbacks=[cb])
    pictures = read_images(tmp_path / "images")
    _, image, _ = pictures["reconstructions"][0]
    np.testing.assert_allclose(
        tile(image, 1, 1), vae.reconstruct([IMAGES[:2], labels[:2]])[1],
        atol=0.5 / 255 + 1e-6)
    assert pictures["samples"][0][1].shape == (6, 11, 1)


def test_needs_a_vae_model(tmp_path):
    x_in = keras.Input((4, 4, 1))
    model = keras.Model(x_in, keras.layers.Dense(1)(x_in))
    model.compile(loss="mse")
    with pytest.raises(TypeError, match="needs a keras_vae.VAEModel"):
        model.fit(IMAGES, IMAGES[..., :1], epochs=1, verbose=0,
                  callbacks=[TensorBoardImages(tmp_path, IMAGES[:2])])


@pytest.mark.parametrize("kwargs, argument", [
    ({"x": IMAGES.reshape(32, 16)}, "x"),          # flat, no image_shape
    ({"x": np.zeros((2, 4, 4, 5))}, "x"),          # 5 channels
    ({"x": np.zeros((0, 4, 4, 1))}, "x"),          # no example
    ({"x": np.zeros((2, 4, 4, 1, 1))}, "x"),
    ({"image_shape": (3, 3)}, "image_shape"),      # 9 values, not 16
    ({"image_shape": (4, 4, 2)}, "image_shape"),   # 2 channels
    ({"image_shape": 16}, "image_shape"),
    ({"every_n_epochs": 0}, "every_n_epochs"),
    ({"num_samples": -1}, "num_samples"),
    ({"seed": 1.5}, "seed"),
    ({"ncols": 0}, "ncols"),
    ({"value_range": (1.0, 0.0)}, "value_range"),
    ({"log_dir": 3}, "log_dir"),
])
def test_bad_arguments(kwargs, argument, tmp_path):
    args = {"log_dir": tmp_path, "x": IMAGES[:4], **kwargs}
    with pytest.raises(ValueError,
                       match=f"Invalid value received for argument "
                             f"`{argument}`. Expected"):
        TensorBoardImages(**args)


def test_flat_data_error_suggests_the_square_shape(tmp_path):
    with pytest.raises(ValueError, match=r"image_shape=\(4, 4\).*"
                                         r"Received: x.shape=\(32, 16\)"):
        TensorBoardImages(tmp_path, IMAGES.reshape(32, 16))


def test_does_not_change_the_training_result(tmp_path):
    """Same seeds, with and without the callback: identical weights (it
    draws its samples from a fixed seed, not from the model's noise)."""
    weights = []
    for callbacks in ([], [TensorBoardImages(str(tmp_path), IMAGES[:4])]):
        keras.utils.set_random_seed(3)
        vae = image_vae()
        vae.fit(IMAGES, batch_size=8, epochs=2, verbose=0, shuffle=False,
                callbacks=callbacks)
        weights.append([w.numpy() for w in vae.weights])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
