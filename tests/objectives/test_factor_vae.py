"""FactorVAE: the discriminator against a hand computation, the TC penalty
as its logit (the density-ratio trick), each loss training only its own
weights, the discriminator learning under XLA, saving, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae import objectives
from keras_vae.losses import BernoulliNLL
from keras_vae.objectives import FactorVAE, FactorVAEDiscriminator
from tests.builders import binary_data, mlp_vae
from tests.objectives.test_beta_tcvae import (
    gumbel_vae,
    iaf_vae,
    spatial_vae,
    two_level_vae,
)

# 4 noisy binary prototypes: the aggregate posterior is 4 clusters, far
# from the product of its marginals (a large total correlation).
X = binary_data(256, d=32, seed=2)
X_SHARP = binary_data(512, d=32, seed=2)


def numpy_logits(layer, z, slope=0.2):
    """The discriminator's forward pass written out."""
    h = np.asarray(z, np.float64)
    weights = [w.numpy().astype(np.float64) for w in layer.trainable_weights]
    pairs = list(zip(weights[::2], weights[1::2]))
    for kernel, bias in pairs[:-1]:
        h = h @ kernel + bias
        h = np.where(h > 0, h, slope * h)
    kernel, bias = pairs[-1]
    return (h @ kernel + bias)[:, 0]


def softplus(x):
    return np.logaddexp(0.0, x)


def test_discriminator_is_an_mlp_and_its_stopped_call_has_no_weight_gradient():
    d = FactorVAEDiscriminator(units=(5, 4), seed=0)
    d.build((None, 3))
    assert len(d.trainable_weights) == 6 and d.built
    z = tf.constant(np.random.default_rng(0).normal(size=(16, 3)), tf.float32)
    np.testing.assert_allclose(d(z), numpy_logits(d, z), rtol=1e-5,
                               atol=1e-6)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        live, stopped = d(z), d.stopped_logits(z)
    np.testing.assert_array_equal(live, stopped)
    assert all(g is None for g in tape.gradient(stopped,
                                                d.trainable_weights))
    np.testing.assert_allclose(tape.gradient(stopped, z),
                               tape.gradient(live, z), rtol=1e-6)


def test_permute_dims_permutes_each_dimension_on_its_own():
    d = FactorVAEDiscriminator(units=(4,), seed=0)
    z = np.arange(64 * 3, dtype="float32").reshape(64, 3)
    p = d.permute_dims(tf.constant(z)).numpy()
    for j in range(3):
        np.testing.assert_array_equal(np.sort(p[:, j]), z[:, j])
    orders = [np.argsort(p[:, j]) for j in range(3)]
    assert not np.array_equal(orders[0], orders[1])
    assert np.mean(p[:, 0] // 3 == p[:, 1] // 3) < 0.2  # rows are mixed
    # The same draws with and without XLA, for a fixed seed.
    seed = tf.constant([3, 4])
    xla = tf.function(lambda t: d.permute_dims(t, seed), jit_compile=True)
    np.testing.assert_array_equal(xla(tf.constant(z)),
                                  d.permute_dims(tf.constant(z), seed))


def test_penalty_is_the_density_ratio_logit_and_each_loss_trains_its_own():
    vae = mlp_vae(latent=3)
    obj = FactorVAE(gamma=7.0, discriminator_units=(8,), seed=3)
    vae.compile(loss=BernoulliNLL(), objective=obj, jit_compile=False)
    d = vae.objective_layer
    assert d.optimizer is not None and not hasattr(obj, "discriminator")
    t = vae.trace(X[:48], X[:48], seed=tf.constant([5, 6]), training=True)
    z = t.levels[0].z.numpy()
    state = d.seed_generator.state.numpy().copy()
    vae_weights = [w for w in vae.trainable_weights
                   if all(w is not v for v in d.trainable_weights)]
    with tf.GradientTape(persistent=True) as tape:
        t = vae.trace(X[:48], X[:48], seed=tf.constant([5, 6]),
                      training=True)
        loss, metrics = obj.compute(t, d)
        elbo_loss = objectives.ELBO().compute(t)[0]
        vae_part = elbo_loss + 7.0 * metrics["total_correlation"]
    # TC = E_q(z)[log D/(1-D)] = the mean logit on samples of q(z).
    joint = numpy_logits(d, z)
    np.testing.assert_allclose(metrics["total_correlation"], joint.mean(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, float(elbo_loss) + 7.0 * joint.mean(),
                               rtol=1e-5)
    # D's loss and accuracy: joint z against the same draws permuted.
    d.seed_generator.state.assign(state)
    permuted = numpy_logits(d, d.permute_dims(tf.constant(z)))
    np.testing.assert_allclose(
        metrics["discriminator_loss"],
        0.5 * (softplus(-joint).mean() + softplus(permuted).mean()),
        rtol=1e-5)
    np.testing.assert_allclose(
        metrics["discriminator_accuracy"],
        0.5 * (np.mean(joint > 0) + np.mean(permuted < 0)))
    # D's loss trains D only; the VAE's loss (with γ·TC) the VAE only.
    d_grads = tape.gradient(loss, d.trainable_weights)
    want = tape.gradient(metrics["discriminator_loss"], d.trainable_weights)
    for g, w in zip(d_grads, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
    assert all(g is None for g in tape.gradient(
        metrics["discriminator_loss"], vae_weights))
    assert all(g is None for g in tape.gradient(
        metrics["total_correlation"], d.trainable_weights))
    got = tape.gradient(loss, vae_weights)
    want = tape.gradient(vae_part, vae_weights)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def sharp_vae():
    """A VAE with a KL weight of 0.05: sharp posteriors, so the aggregate
    posterior of the 4 prototypes is 4 tight clusters in 2-D, whose TC is
    large (log 4 nats for 4 point masses off an axis-aligned grid)."""
    x_in = keras.Input((32,))
    h = keras.layers.Dense(32, activation="relu")(x_in)
    q = keras_vae.KLRegularizer(weight=0.05)(keras_vae.GaussianEncoderHead(2)(h))
    z = keras_vae.ReparameterizedSample(seed=1)(q)
    h = keras.layers.Dense(32, activation="relu")(z)
    return keras_vae.VAEModel(x_in, keras.layers.Dense(32)(h))


def test_discriminator_trains_under_xla_and_saves_with_the_model(tmp_path):
    """γ = 0: the VAE trains as a plain (β = 0.05) VAE and D learns, by
    its own Adam in the same XLA step, to tell its z from permuted z
    (measured: 0.50 in the first epoch, 0.67 in the eighth; 0.65 on
    fresh draws, where chance is 0.50 ± 0.016)."""
    vae = sharp_vae()
    obj = FactorVAE(gamma=0.0, discriminator_units=(32, 32),
                    discriminator_learning_rate=1e-2, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL(),
                objective=obj)
    assert vae.jit_compile
    d = vae.objective_layer
    before = [w.numpy().copy() for w in d.trainable_weights]
    hist = vae.fit(X_SHARP, batch_size=64, epochs=8, verbose=0).history
    assert d.optimizer.iterations.numpy() == 64  # D's own Adam, each step
    assert all(not np.array_equal(a, w.numpy())
               for a, w in zip(before, d.trainable_weights))
    acc = hist["discriminator_accuracy"]
    assert acc[-1] > 0.6 and acc[-1] > acc[0] + 0.08, acc
    assert hist["discriminator_loss"][-1] < hist["discriminator_loss"][0]
    assert hist["total_correlation"][-1] > 0.1
    # On fresh draws: joint z (label 1) against dimension-wise permuted z.
    t = vae.trace(X_SHARP, X_SHARP, seed=tf.constant([1, 1]))
    z = t.levels[0].z
    joint, permuted = d(z).numpy(), d(d.permute_dims(z)).numpy()
    accuracy = 0.5 * (np.mean(joint > 0) + np.mean(permuted < 0))
    assert accuracy > 0.6, accuracy
    assert joint.mean() > permuted.mean()

    vae.save(tmp_path / "factor.keras")
    loaded = keras.saving.load_model(tmp_path / "factor.keras")
    assert isinstance(loaded.objective, FactorVAE)
    assert loaded.objective.get_config() == obj.get_config()
    assert loaded.objective_layer.optimizer is not d.optimizer
    for a, b in zip(d.optimizer.variables,
                    loaded.objective_layer.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # D's Adam saved
    for a, b in zip(d.weights, loaded.objective_layer.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(
        loaded.objective_layer.seed_generator.state, d.seed_generator.state)
    np.testing.assert_array_equal(loaded.objective_layer(z), d(z))
    for a, b in zip(loaded.get_weights(), vae.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The VAE's optimizer state loads too (it never holds D's weights).
    assert len(loaded.optimizer.variables) == len(vae.optimizer.variables)
    for a, b in zip(loaded.optimizer.variables, vae.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_config_round_trip():
    obj = FactorVAE(gamma=35.0, discriminator_units=(1000,) * 5,
                    discriminator_learning_rate=1e-4, num_samples=2, seed=4)
    config = obj.get_config()
    assert config == {"num_samples": 2, "gamma": 35.0,
                      "discriminator_units": [1000] * 5,
                      "discriminator_learning_rate": 1e-4, "seed": 4}
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(obj))
    assert type(again) is FactorVAE and again.get_config() == config
    layer = FactorVAEDiscriminator(units=(3, 2), negative_slope=0.1, seed=1)
    again = FactorVAEDiscriminator.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match=r"argument `gamma`"):
        FactorVAE(gamma=-1.0)
    for units in [(), (0,), "256", 3, (8, 2.5)]:
        with pytest.raises(ValueError, match=r"argument `discriminator_units`"):
            FactorVAE(discriminator_units=units)
    with pytest.raises(ValueError,
                       match=r"argument `discriminator_learning_rate`"):
        FactorVAE(discriminator_learning_rate=0.0)
    with pytest.raises(ValueError, match=r"argument `seed`"):
        FactorVAE(seed=1.5)
    vae = mlp_vae(latent=2)
    vae.compile(loss=BernoulliNLL(), jit_compile=False)
    with pytest.raises(ValueError, match=r"made by `compile`"):
        FactorVAE().compute(vae.trace(X[:8], X[:8]))


@pytest.mark.parametrize("build, message", [
    (two_level_vae, r"FactorVAE scores one latent.*2 levels"),
    (gumbel_vae, r"continuous reparameterized latent.*GumbelSoftmaxSample"),
    (spatial_vae, r"flat latent z of shape \(batch, L\)"),
])
def test_compile_refuses_models_it_cannot_score(build, message):
    with pytest.raises(ValueError, match=message):
        build().compile(loss=BernoulliNLL(), objective=FactorVAE())


@pytest.mark.parametrize("build", [iaf_vae,
                                   lambda: mlp_vae(covariance="full")])
def test_flows_and_full_covariances_are_accepted(build):
    vae = build()
    vae.compile(loss=BernoulliNLL(), objective=FactorVAE(), jit_compile=False)
    loss, metrics = vae.compute_objective(X[:16])
    assert np.isfinite(float(loss)) and "total_correlation" in metrics


def test_discriminator_trains_finite_under_mixed_precision():
    """The model's LossScaleOptimizer scales the loss; the objective's own
    optimizer receives unscaled gradients (else D's Adam would step by the
    scale's multiple, 2**15)."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    vae = mlp_vae(latent=3)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), loss=BernoulliNLL(),
                objective=FactorVAE(discriminator_units=(8,), seed=0,
                                    discriminator_learning_rate=1e-3))
    assert isinstance(vae.optimizer, keras.optimizers.LossScaleOptimizer)
    d = vae.objective_layer
    before = [w.numpy().copy() for w in d.trainable_weights]
    vae.fit(X[:64], batch_size=32, epochs=1, verbose=0)
    moments = [v.numpy() for v in d.optimizer.variables
               if "momentum" in v.path]
    assert moments and all(np.isfinite(m).all() for m in moments)
    # Adam's first moment after 2 steps is ~(1 - 0.5^2) of the unscaled
    # gradient: with scaled gradients it would be ~2**15 times larger.
    assert max(np.abs(m).max() for m in moments) < 10.0
    steps = [np.abs(w.numpy() - b).max()
             for w, b in zip(d.trainable_weights, before)]
    assert 0 < max(steps) <= 3e-3  # two Adam steps of 1e-3 at most
