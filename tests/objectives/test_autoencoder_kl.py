"""AutoencoderKL: the train step against a recomputation by hand (the
adaptive weight as a ratio of gradient norms from separate tapes, NumPy
norms), the discriminator frozen before `discriminator_start` and
training after, state per model, the model harness (save/load, export),
bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae.losses import LaplaceNLL, PerceptualDistance
from keras_vae.objectives import AutoencoderKL
from tests.model_harness import run_model_test

SHAPE = (8, 8, 3)
D = int(np.prod(SHAPE))


def conv_vae(seed=0, head=None):
    """8x8x3 -> latent (4, 4, 2) -> 8x8x3 (Laplace loc or Bernoulli
    logits); the decoder's last kernel is `conv_out`'s."""
    x_in = keras.Input(SHAPE, name="x")
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same",
                            activation="tanh")(x_in)
    q = keras_vae.GaussianEncoderHead(2, flatten=False)(h)
    z = keras_vae.ReparameterizedSample(seed=seed)(keras_vae.KLRegularizer()(q))
    h = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same",
                                     activation="tanh", name="up")(z)
    out = keras.layers.Conv2D(3, 3, padding="same", name="conv_out")(h)
    if head is not None:
        out = head(out)
    return keras_vae.VAEModel(x_in, out, name="conv_vae")


def features(shape=SHAPE):
    """A small frozen feature model with two outputs (tanh: no all-zero
    feature vectors, so the hand LPIPS below has finite gradients)."""
    x = keras.Input(shape)
    f1 = keras.layers.Conv2D(4, 3, padding="same", activation="tanh")(x)
    f2 = keras.layers.Conv2D(5, 3, strides=2, padding="same",
                             activation="tanh")(f1)
    return keras.Model(x, [f1, f2], name="features")


def patchgan():
    return keras_vae.PatchGANDiscriminator(num_layers=1, filters=4, groups=4)


def data(n=8, seed=0):
    return np.random.default_rng(seed).uniform(size=(n,) + SHAPE).astype(
        "float32")


def seed_states(model):
    return [w for w in model.variables if "seed_generator_state" in w.path]


# ------------------------------------------------------- by hand
def lpips_by_hand(feature_model, x, y):
    """LPIPS with unit weights, written out: per output, unit-normalise
    over channels, squared difference summed over channels, mean over
    positions; summed over outputs."""
    total = 0.0
    for fx, fy in zip(feature_model(x), feature_model(y)):
        ux = fx / (tf.sqrt(tf.reduce_sum(fx * fx, -1, keepdims=True)) + 1e-10)
        uy = fy / (tf.sqrt(tf.reduce_sum(fy * fy, -1, keepdims=True)) + 1e-10)
        total += tf.reduce_mean(tf.reduce_sum((ux - uy) ** 2, -1), [1, 2])
    return total


def terms_by_hand(vae, x, feature_model, disc, kl_weight, perceptual_weight):
    """One forward pass with the model's current noise state, and the
    recipe's terms computed by hand (LaplaceNLL(scale=1): x̂ = loc)."""
    trace = vae.trace(x, x, training=True)
    loc, scale = trace.levels[0].params
    x_hat = trace.decoder_params
    rec = tf.reduce_mean(tf.reduce_sum(tf.abs(x - x_hat), [1, 2, 3])
                         + D * np.log(2.0))
    perc = tf.reduce_mean(lpips_by_hand(feature_model, x, x_hat))
    kl = tf.reduce_mean(tf.reduce_sum(
        0.5 * (loc ** 2 + scale ** 2 - 1.0) - tf.math.log(scale), [1, 2, 3]))
    nll = rec + perceptual_weight * D * perc
    g = -tf.reduce_mean(disc(x_hat))
    real, fake = disc(tf.stop_gradient(x)), disc(tf.stop_gradient(x_hat))
    hinge = 0.5 * (tf.reduce_mean(tf.nn.relu(1.0 - real))
                   + tf.reduce_mean(tf.nn.relu(1.0 + fake)))
    return dict(rec=rec, perc=perc, kl=kl, nll=nll, g=g, hinge=hinge,
                real=tf.reduce_mean(real), fake=tf.reduce_mean(fake),
                base=nll + kl_weight * kl)


def test_xla_step_equals_a_recomputation_by_hand_with_the_adaptive_weight():
    kl_w, p_w, d_w, lr = 0.1, 0.05, 0.5, 1e-3
    keras.utils.set_random_seed(0)
    vae = conv_vae()
    feature_model = features()
    vae.compile(
        optimizer=keras.optimizers.SGD(1.0), loss=LaplaceNLL(scale=1.0),
        objective=AutoencoderKL(
            kl_weight=kl_w, perceptual=feature_model, perceptual_weight=p_w,
            discriminator=patchgan(), discriminator_weight=d_w,
            discriminator_learning_rate=lr),
        jit_compile=True)
    state = vae.objective_layer
    disc, kernel = state.discriminator, vae.get_layer("conv_out").kernel
    ae_weights = [w for w in vae.trainable_weights
                  if all(w is not u for u in disc.trainable_weights)]
    assert len(ae_weights) == len(vae.trainable_weights) - len(
        disc.trainable_weights) and any(w is kernel for w in ae_weights)
    x = tf.constant(data())
    noise = [s.numpy() for s in seed_states(vae)]

    def forward():  # the same noise for every tape
        for s, value in zip(seed_states(vae), noise):
            s.assign(value)
        return terms_by_hand(vae, x, feature_model, disc, kl_w, p_w)

    # The adaptive weight: gradient norms at the last kernel, two tapes.
    with tf.GradientTape() as tape:
        t = forward()
    g_nll = tape.gradient(t["nll"], kernel).numpy()
    with tf.GradientTape() as tape:
        t = forward()
    g_gen = tape.gradient(t["g"], kernel).numpy()
    ratio = np.linalg.norm(g_nll) / (np.linalg.norm(g_gen) + 1e-4)
    weight = d_w * min(max(ratio, 0.0), 1e4)
    assert 0.0 < ratio < 1e4  # not at the clip
    with tf.GradientTape() as tape:
        t = forward()
        ae_loss = t["base"] + weight * t["g"]
    want_ae = tape.gradient(ae_loss, ae_weights)
    with tf.GradientTape() as tape:
        t = forward()
    want_d = tape.gradient(t["hinge"], disc.trainable_weights)

    ae_before = [w.numpy() for w in ae_weights]
    d_before = [w.numpy() for w in disc.trainable_weights]
    for s, value in zip(seed_states(vae), noise):
        s.assign(value)
    got = vae.train_on_batch(x, return_dict=True)
    close = dict(rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(got["adaptive_weight"], weight, rtol=2e-4)
    np.testing.assert_allclose(got["loss"], float(ae_loss), **close)
    for key, ref in [("reconstruction", "rec"), ("perceptual", "perc"),
                     ("kl", "kl"), ("generator_loss", "g"),
                     ("discriminator_loss", "hinge"),
                     ("discriminator_real_logits", "real"),
                     ("discriminator_fake_logits", "fake")]:
        np.testing.assert_allclose(got[key], float(t[ref]), err_msg=key,
                                   **close)
    # SGD(1): the autoencoder moved by minus its gradient.
    for w0, w, g in zip(ae_before, ae_weights, want_ae):
        np.testing.assert_allclose(w0 - w.numpy(), g.numpy(), rtol=2e-3,
                                   atol=2e-4 * np.abs(g.numpy()).max(),
                                   err_msg=w.path)
    # The discriminator's own Adam: its first moment is (1 - β1) × the
    # hinge gradient, and its weights moved.
    momenta = state.optimizer.variables[2::2]
    assert int(state.optimizer.iterations.numpy()) == 1
    for m, g in zip(momenta, want_d):
        np.testing.assert_allclose(m.numpy() / 0.5, g.numpy(), rtol=2e-3,
                                   atol=1e-3 * np.abs(g.numpy()).max())
    # Every weight with a gradient moved (the logits' bias has none while
    # all logits are in (-1, 1): the hinge's two halves cancel).
    for a, w, g in zip(d_before, disc.trainable_weights, want_d):
        assert np.array_equal(a, w.numpy()) == (not np.any(g.numpy())), w.path
    assert sum(np.any(g.numpy()) for g in want_d) >= 4
    assert int(state.step.numpy()) == 1


def test_discriminator_frozen_until_start_then_both_train():
    p_w = 0.05
    keras.utils.set_random_seed(1)
    objective = AutoencoderKL(
        kl_weight=0.1, perceptual=features(), perceptual_weight=p_w,
        discriminator=patchgan(), discriminator_start=2,
        discriminator_learning_rate=1e-2)
    vae, other = conv_vae(), conv_vae()
    for model in (vae, other):
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=LaplaceNLL(scale=1.0), objective=objective)
    state = vae.objective_layer
    # One objective, two models: each its own discriminator (a new copy)
    # and counter; the frozen feature model is shared read-only.
    assert state.discriminator is not other.objective_layer.discriminator
    assert state.discriminator is not objective.discriminator
    assert state.feature_model is other.objective_layer.feature_model
    other_before = [w.numpy() for w in other.objective_layer.weights]
    start = [w.numpy() for w in state.discriminator.trainable_weights]
    x = data(seed=1)

    def no_generator_term(r):
        return (r["reconstruction"] + p_w * D * r["perceptual"]
                + 0.1 * r["kl"])

    for step in range(2):
        r = vae.train_on_batch(x, return_dict=True)
        for w0, w in zip(start, state.discriminator.trainable_weights):
            np.testing.assert_array_equal(w0, w.numpy())  # bit-identical
        assert r["discriminator_loss"] == 0.0
        assert r["adaptive_weight"] > 0 and r["generator_loss"] != 0
        np.testing.assert_allclose(r["loss"], no_generator_term(r),
                                   rtol=1e-6)
    assert int(state.optimizer.iterations.numpy()) == 2  # zero-grad steps
    r = vae.train_on_batch(x, return_dict=True)
    assert int(state.step.numpy()) == 3
    assert sum(not np.array_equal(w0, w.numpy()) for w0, w in
               zip(start, state.discriminator.trainable_weights)) >= 4
    assert r["discriminator_loss"] > 0.5  # hinge near 1 at the start
    np.testing.assert_allclose(
        r["loss"] - no_generator_term(r),
        r["adaptive_weight"] * r["generator_loss"], rtol=1e-3)
    # Evaluation: no tape, so no adaptive weight (0) and no generator
    # term; the counter stays.
    e = vae.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)
    assert e["adaptive_weight"] == 0.0 and e["generator_loss"] != 0.0
    np.testing.assert_allclose(e["loss"], no_generator_term(e), rtol=1e-6)
    assert int(state.step.numpy()) == 3
    for w0, w in zip(other_before, other.objective_layer.weights):
        np.testing.assert_array_equal(w0, w.numpy())  # the other's state


def test_model_harness_round_trip_and_export(tmp_path):
    """XLA = eager, data forms, .keras round trip with the discriminator,
    its Adam and the counter, export without the objective's state
    (tests/model_harness.py; BernoulliNLL)."""
    run_model_test(
        conv_vae,
        lambda: AutoencoderKL(perceptual=features(), perceptual_weight=0.01,
                              discriminator=patchgan()),
        (data(n=8) > 0.5).astype("float32"), tmp_path)


def test_last_layer_is_found_or_named_and_without_terms_it_is_a_weighted_elbo():
    keras.utils.set_random_seed(2)
    vae = conv_vae(head=keras.layers.Activation("linear", name="act"))
    vae.compile(loss=LaplaceNLL(scale=1.0), jit_compile=False,
                objective=AutoencoderKL(discriminator=patchgan()))
    assert vae.objective_layer.refs.kernel is vae.get_layer("conv_out").kernel
    vae.compile(loss=LaplaceNLL(scale=1.0), jit_compile=False,
                objective=AutoencoderKL(discriminator=patchgan(),
                                        last_layer="up"))
    assert vae.objective_layer.refs.kernel is vae.get_layer("up").kernel
    # Neither term: no state, loss = reconstruction + kl_weight * KL.
    vae.compile(loss=LaplaceNLL(scale=1.0), jit_compile=False,
                objective=AutoencoderKL(kl_weight=0.25))
    assert vae.objective_layer is None
    loss, m = vae.compute_objective(data(), training=False)
    assert set(m) == {"elbo", "reconstruction", "kl"}
    np.testing.assert_allclose(loss, m["reconstruction"] + 0.25 * m["kl"],
                               rtol=1e-6)
    config = AutoencoderKL(perceptual=features(), discriminator=patchgan(),
                           discriminator_start=7).get_config()
    again = AutoencoderKL.from_config(config)
    assert again.get_config() == config
    assert isinstance(again.perceptual, PerceptualDistance)


@pytest.mark.parametrize("kwargs, match", [
    ({"kl_weight": -1.0}, "kl_weight"),
    ({"perceptual_weight": -0.5}, "perceptual_weight"),
    ({"discriminator_weight": -0.5}, "discriminator_weight"),
    ({"discriminator_start": -1}, "discriminator_start"),
    ({"discriminator_learning_rate": 0.0}, "discriminator_learning_rate"),
    ({"discriminator_beta_2": 1.0}, "discriminator_beta_2"),
    ({"perceptual": "vgg"}, "perceptual"),
    ({"discriminator": 3}, "discriminator"),
    ({"last_layer": 3}, "last_layer"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=f"argument `{match}`"):
        AutoencoderKL(**kwargs)


def _head_discriminator():
    return keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(1)])


def _kernel_free_vae():
    x_in = keras.Input(SHAPE)
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x_in)
    q = keras_vae.GaussianEncoderHead(3, flatten=False)(h)
    z = keras_vae.ReparameterizedSample()(keras_vae.KLRegularizer()(q))
    return keras_vae.VAEModel(x_in, keras.layers.UpSampling2D()(z))


@pytest.mark.parametrize("build, kwargs, match", [
    (conv_vae, {"perceptual": features((16, 16, 3))},
     r"feature_model.*\(None, 16, 16, 3\).*\(None, 8, 8, 3\)"),
    (conv_vae, {"discriminator": _head_discriminator()},
     r"argument `discriminator`.*patch map.*\(None, 1\)"),
    (_kernel_free_vae, {"discriminator": patchgan()},
     "no layer with a trainable `kernel`"),
    (conv_vae, {"discriminator": patchgan(), "last_layer": "nope"},
     "argument `last_layer`"),
    (conv_vae, {"discriminator": patchgan(), "last_layer": "x"},
     "argument `last_layer`.*has none"),
])
def test_models_it_cannot_train_are_refused_at_compile(build, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build().compile(loss=LaplaceNLL(scale=1.0),
                        objective=AutoencoderKL(**kwargs))


def test_missing_values_and_non_image_models_are_refused():
    with pytest.raises(ValueError, match="missing_values"):
        conv_vae().compile(loss=LaplaceNLL(scale=1.0),
                           missing_values=float("nan"),
                           objective=AutoencoderKL(discriminator=patchgan()))
    from tests.builders import mlp_vae

    with pytest.raises(ValueError, match="one image input"):
        mlp_vae().compile(loss=LaplaceNLL(scale=1.0),
                          objective=AutoencoderKL(perceptual=features()))
