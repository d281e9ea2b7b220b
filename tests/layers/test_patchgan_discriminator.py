import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae import PatchGANDiscriminator
from tests.helpers import run_layer_test


def images(shape=(2, 32, 32, 3), seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


def test_shared_layer_checks():
    # num_layers=2 on 32 x 32: 16, 8 (stride 2), 7, 6 (stride 1).
    run_layer_test(
        PatchGANDiscriminator,
        {"num_layers": 2, "filters": 8, "max_filter_multiplier": 8,
         "normalization": "group", "groups": 4, "epsilon": 1e-5,
         "negative_slope": 0.2},
        images(), expected_output_shape=(2, 6, 6, 1),
        # Kernel + bias of the first and last conv; kernel (+ gamma, beta of
        # the normalisation, or a bias without one) of the two others.
        expected_num_trainable_weights=10,
        expected_num_non_trainable_weights=0,
        expected_num_seed_generators=0, expected_num_losses=0)
    # Without normalisation every conv has a bias: 4 kernels + 4 biases.
    plain = PatchGANDiscriminator(num_layers=2, filters=8,
                                  normalization="none")
    plain.build((None, 32, 32, 3))
    assert len(plain.trainable_weights) == 8 and not plain.non_trainable_weights


def test_reference_architecture_and_initialisation():
    disc = PatchGANDiscriminator()  # taming / latent-diffusion defaults
    disc.build((None, 256, 256, 3))
    assert disc.compute_output_shape((None, 256, 256, 3)) == (None, 30, 30, 1)
    kernels = [c.kernel.shape for c in disc.convs] + [disc.head.kernel.shape]
    assert kernels == [(4, 4, 3, 64), (4, 4, 64, 128), (4, 4, 128, 256),
                       (4, 4, 256, 512), (4, 4, 512, 1)]
    assert [c.strides for c in disc.convs + [disc.head]] == [
        (2, 2), (2, 2), (2, 2), (1, 1), (1, 1)]
    assert [c.use_bias for c in disc.convs] == [True, False, False, False]
    # Weights ~ N(0, 0.02), as taming's weights_init.
    big = disc.convs[3].kernel.numpy()
    assert abs(big.mean()) < 1e-3 and abs(big.std() - 0.02) < 5e-4
    # The cap on the channel doubling.
    deep = PatchGANDiscriminator(num_layers=5, filters=4, groups=4)
    assert deep.channels == [4, 8, 16, 32, 32, 32]


def test_receptive_field_is_70_pixels_for_three_layers():
    # Without normalisation (whose statistics span the whole image), one
    # logit sees a 70 x 70 patch (pix2pix's "70 x 70 PatchGAN").
    disc = PatchGANDiscriminator(num_layers=3, filters=2,
                                 normalization="none")
    x = tf.Variable(images((1, 96, 96, 1)))
    with tf.GradientTape() as tape:
        logits = disc(x)
        centre = logits[0, 5, 5, 0]
    assert logits.shape == (1, 10, 10, 1)
    grad = np.abs(tape.gradient(centre, x).numpy()[0, ..., 0])
    rows, cols = np.nonzero(grad.sum(1))[0], np.nonzero(grad.sum(0))[0]
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


def test_examples_are_normalised_independently_and_output_is_float32():
    disc = PatchGANDiscriminator(num_layers=2, filters=8, groups=4)
    x = images((3, 32, 32, 3))
    both = disc(x).numpy()
    np.testing.assert_allclose(disc(x[:1]).numpy(), both[:1], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(disc(x[::-1]).numpy(), both[::-1], rtol=1e-5,
                               atol=1e-6)
    keras.mixed_precision.set_global_policy("mixed_float16")
    half = PatchGANDiscriminator(num_layers=2, filters=8, groups=4)
    keras.mixed_precision.set_global_policy("float32")
    assert half.convs[0].compute_dtype == "float16"
    out = half(x)
    assert out.dtype == tf.float32 and np.all(np.isfinite(out.numpy()))


def test_stopped_logits_pass_gradients_to_images_only():
    disc = PatchGANDiscriminator(num_layers=2, filters=8, groups=4)
    x = tf.Variable(images())
    with tf.GradientTape(persistent=True) as tape:
        logits = disc.stopped_logits(x)
        total = tf.reduce_sum(logits)
    np.testing.assert_allclose(logits.numpy(), disc(x).numpy(), rtol=1e-6)
    assert all(g is None for g in
               tape.gradient(total, disc.trainable_variables))
    assert np.any(tape.gradient(total, x).numpy() != 0)


def test_bad_arguments_and_inputs():
    for kwargs, name in [({"num_layers": 0}, "num_layers"),
                         ({"filters": 2.5}, "filters"),
                         ({"normalization": "batch"}, "normalization"),
                         ({"filters": 8, "groups": 32}, "groups"),
                         ({"negative_slope": -0.1}, "negative_slope"),
                         ({"epsilon": 0.0}, "epsilon")]:
        with pytest.raises(ValueError, match=f"argument `{name}`"):
            PatchGANDiscriminator(**kwargs)
    disc = PatchGANDiscriminator(num_layers=3, filters=8, groups=4)
    with pytest.raises(ValueError, match=r"empty patch map.*at least 24"):
        disc(images((1, 16, 16, 3)))
    with pytest.raises(ValueError, match=r"\(batch, H, W, C\)"):
        PatchGANDiscriminator(filters=8, groups=4)(np.zeros((2, 32, 3)))
