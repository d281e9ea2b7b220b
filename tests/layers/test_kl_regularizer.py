import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import KLRegularizer, priors
from tests.helpers import run_layer_test

tfd = tfp.distributions
RNG = np.random.default_rng(0)
LOC = RNG.normal(size=(6, 3)).astype("float32")
SCALE = RNG.uniform(0.3, 2.0, size=(6, 3)).astype("float32")
TRIL = np.tril(RNG.normal(size=(6, 3, 3)) * 0.3).astype("float32")
TRIL[:, range(3), range(3)] = RNG.uniform(0.5, 1.5, size=(6, 3))


class TwoBumpPrior(priors.Prior):
    """A prior with no analytic KL to a Gaussian (for the sampled path)."""

    def distribution(self, latent_dim):
        return tfd.MixtureSameFamily(
            tfd.Categorical(probs=[0.3, 0.7]),
            tfd.MultivariateNormalDiag(
                loc=tf.stack([-tf.ones(latent_dim), tf.ones(latent_dim)]),
                scale_diag=tf.ones((2, latent_dim)),
            ),
        )


@pytest.mark.parametrize(
    "kwargs, scale",
    [({}, SCALE), ({"weight": 0.5, "free_bits": 0.1, "seed": 3}, SCALE),
     ({"weight": 3.0, "capacity": 2.0}, SCALE),
     ({"prior": priors.StandardNormal()}, TRIL)],
)
def test_shared_layer_checks(kwargs, scale):
    # kl_weight (and kl_capacity) are non-trainable weights; one loss.
    run_layer_test(
        KLRegularizer, kwargs, (LOC, scale),
        expected_output_shape=((6, 3), scale.shape),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=1 + ("capacity" in kwargs),
        expected_num_seed_generators=1, expected_num_losses=1,
    )


def _monte_carlo_kl(q, p, n, seed=0):
    z = q.sample(n, seed=tf.constant([seed, 1]))
    ratio = (q.log_prob(z) - p.log_prob(z)).numpy()  # (n, B)
    return ratio.mean(0), ratio.std(0) / np.sqrt(n)


@pytest.mark.parametrize("scale", [SCALE, TRIL], ids=["diag", "full"])
def test_kl_equals_tfp_and_monte_carlo(scale):
    layer = KLRegularizer()
    layer((LOC, scale))
    kl = layer.kl_divergence([LOC, scale]).numpy()
    if scale.ndim == 2:
        q = tfd.MultivariateNormalDiag(LOC, scale)
    else:
        q = tfd.MultivariateNormalTriL(LOC, scale)
    p = tfd.MultivariateNormalDiag(tf.zeros(3), tf.ones(3))
    np.testing.assert_allclose(kl, tfd.kl_divergence(q, p), rtol=1e-5)
    # 100k-sample Monte Carlo: within 5 standard errors (~1e-2 nats here).
    mc, se = _monte_carlo_kl(q, p, 100_000)
    assert np.all(np.abs(kl - mc) < 5 * se + 1e-6), (kl, mc, se)
    # Closed form for the diagonal case, written out.
    if scale.ndim == 2:
        closed = 0.5 * np.sum(scale**2 + LOC**2 - 1 - 2 * np.log(scale), -1)
        np.testing.assert_allclose(kl, closed, rtol=1e-5)


def test_added_loss_is_weighted_batch_mean():
    layer = KLRegularizer(weight=2.5)
    layer((LOC, SCALE))
    kl = layer.kl_divergence([LOC, SCALE]).numpy()
    np.testing.assert_allclose(float(layer.losses[0]), 2.5 * kl.mean(), rtol=1e-6)


def test_free_bits_floor_per_dimension():
    layer = KLRegularizer(free_bits=0.5)
    loc = np.zeros((4, 3), "float32")
    scale = np.ones((4, 3), "float32")
    scale[:, 0] = 0.2  # dimension 0 has KL > 0.5, the others KL = 0
    layer((loc, scale))
    kl0 = 0.5 * (0.2**2 - 1 - 2 * np.log(0.2))
    np.testing.assert_allclose(float(layer.losses[0]), kl0 + 2 * 0.5, rtol=1e-5)


def test_weight_variable_is_read_by_a_compiled_function():
    layer = KLRegularizer()
    layer((LOC, SCALE))
    fn = tf.function(lambda: layer.penalty(layer.kl_divergence([LOC, SCALE])), jit_compile=True)
    first = float(fn())
    layer.kl_weight.assign(0.25)
    np.testing.assert_allclose(float(fn()), 0.25 * first, rtol=1e-6)


def test_sampled_estimate_when_no_analytic_kl():
    layer = KLRegularizer(prior=TwoBumpPrior(), seed=0)
    layer((LOC, SCALE))
    q = tfd.MultivariateNormalDiag(LOC, SCALE)
    p = layer.prior_distribution()
    mc, se = _monte_carlo_kl(q, p, 100_000, seed=5)
    z = q.sample(100_000, seed=tf.constant([9, 9]))
    est = layer.kl_divergence([LOC, SCALE], z=z).numpy()
    assert np.all(np.abs(est - mc) < 5 * se * np.sqrt(2) + 1e-6)
    # The add_loss path draws one z per row: unbiased over many calls.
    values = [float(layer((LOC, SCALE)) and layer.losses[0]) for _ in range(100)]
    spread = np.std(values) / np.sqrt(len(values))
    assert abs(np.mean(values) - mc.mean()) < 5 * spread


def test_identity_in_a_plain_keras_model():
    loc_in, scale_in = keras.Input((3,)), keras.Input((3,))
    out = KLRegularizer()((loc_in, scale_in))
    model = keras.Model([loc_in, scale_in], list(out))
    got = model([LOC, SCALE])
    np.testing.assert_array_equal(got[0], LOC)
    np.testing.assert_array_equal(got[1], SCALE)
    assert len(model.losses) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [({"weight": -1}, r"argument `weight`.*Received: weight=-1"),
     ({"free_bits": -0.1}, r"argument `free_bits`"),
     ({"prior": "laplace"}, r"argument `prior`.*Received: prior='laplace'")],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KLRegularizer(**kwargs)


def test_scale_of_wrong_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="KLRegularizer expects"):
        KLRegularizer()((keras.Input((3,)), keras.Input((2,))))


# ------------------------------------------- prior parameters from the model
P_LOC = RNG.normal(size=(6, 3)).astype("float32")
P_SCALE = RNG.uniform(0.5, 1.5, size=(6, 3)).astype("float32")


def _kl_diag(loc, scale, p_loc, p_scale):
    """KL(N(loc, scale^2) || N(p_loc, p_scale^2)) per dimension, float64."""
    loc, scale, p_loc, p_scale = (
        np.asarray(a, "float64") for a in (loc, scale, p_loc, p_scale)
    )
    return (np.log(p_scale / scale)
            + (scale**2 + (loc - p_loc) ** 2) / (2 * p_scale**2) - 0.5)


def test_prior_params_identity_and_loss_is_the_batch_mean_kl():
    layer = KLRegularizer()
    out = layer([(LOC, SCALE), (P_LOC, P_SCALE)])
    assert isinstance(out, tuple) and len(out) == 2
    np.testing.assert_array_equal(out[0], LOC)
    np.testing.assert_array_equal(out[1], SCALE)
    assert layer.has_prior_params and layer.prior is None
    want = tfd.kl_divergence(
        tfd.MultivariateNormalDiag(LOC, SCALE),
        tfd.MultivariateNormalDiag(P_LOC, P_SCALE),
    ).numpy()
    np.testing.assert_allclose(want, _kl_diag(LOC, SCALE, P_LOC, P_SCALE).sum(-1),
                               rtol=1e-5)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(layer.losses[0]), want.mean(), rtol=1e-5)
    # Per example, and not the KL to N(0, I).
    np.testing.assert_allclose(
        layer.kl_divergence([LOC, SCALE], [P_LOC, P_SCALE]), want, rtol=1e-5
    )
    std = layer.kl_divergence([LOC, SCALE], [np.zeros_like(P_LOC),
                                             np.ones_like(P_SCALE)])
    assert np.abs(std.numpy() - want).max() > 0.1
    with pytest.raises(ValueError, match="pass them as `prior_params`"):
        layer.kl_divergence([LOC, SCALE])


def test_prior_params_free_bits_floor_each_dimension():
    layer = KLRegularizer(free_bits=0.3, weight=2.0)
    loc = np.zeros((4, 3), "float32")
    scale = np.ones((4, 3), "float32")
    p_loc = np.zeros((4, 3), "float32")
    p_scale = np.ones((4, 3), "float32")
    loc[:, 0] = [1.0, 2.0, 0.5, 1.5]  # dimension 0: mean KL 0.9375 > 0.3
    p_scale[:, 1] = 1.2                # dimension 1: small KL < 0.3
    layer([(loc, scale), (p_loc, p_scale)])
    per_dim = _kl_diag(loc, scale, p_loc, p_scale).mean(0)
    assert per_dim[0] > 0.3 and 0 < per_dim[1] < 0.3 and per_dim[2] == 0
    want = 2.0 * np.maximum(per_dim, 0.3).sum()
    np.testing.assert_allclose(float(layer.losses[0]), want, rtol=1e-5)
    np.testing.assert_allclose(
        layer.kl_per_dimension([loc, scale], [p_loc, p_scale]),
        _kl_diag(loc, scale, p_loc, p_scale), rtol=1e-5, atol=1e-7,
    )


def test_prior_and_prior_params_together_is_a_clear_error():
    layer = KLRegularizer(prior=priors.StandardNormal())
    with pytest.raises(ValueError, match="also `prior`: give one"):
        layer([(LOC, SCALE), (P_LOC, P_SCALE)])
    with pytest.raises(ValueError, match="also `prior`: give one"):
        KLRegularizer(prior="standard_normal")(
            [(keras.Input((3,)), keras.Input((3,))),
             (keras.Input((3,)), keras.Input((3,)))]
        )


@pytest.mark.parametrize("symbolic", [False, True])
def test_prior_params_of_another_latent_size_raise(symbolic):
    p_loc = np.zeros((6, 4), "float32")
    p_scale = np.ones((6, 4), "float32")
    if symbolic:
        inputs = [(keras.Input((3,)), keras.Input((3,))),
                  (keras.Input((4,)), keras.Input((4,)))]
    else:
        inputs = [(LOC, SCALE), (p_loc, p_scale)]
    with pytest.raises(ValueError, match="posterior's latent shape \(3,\)"):
        KLRegularizer()(inputs)


@pytest.mark.parametrize("wrapped", [True, False], ids=["[logits]", "logits"])
def test_prior_params_with_logits_posterior_raise(wrapped):
    # `[logits, (p_loc, p_scale)]` (the natural spelling) and
    # `[[logits], (p_loc, p_scale)]` should both get the layer's message.
    logits = keras.Input((2, 3))
    posterior = [logits] if wrapped else logits
    with pytest.raises(ValueError, match="Gaussian's `\\(loc, scale\\)`"):
        KLRegularizer()([posterior, (keras.Input((2,)), keras.Input((2,)))])


# ------------------------------------------------------- categorical logits
LOGITS = (RNG.normal(size=(6, 2, 4)) * 1.5).astype("float32")


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_logits_default_prior_is_uniform_and_kl_is_the_closed_form():
    layer = KLRegularizer()
    out = layer(LOGITS)
    np.testing.assert_array_equal(out, LOGITS)
    assert type(layer.prior) is priors.UniformCategorical
    assert (layer.prior.num_variables, layer.prior.num_classes) == (2, 4)
    pi = _softmax(LOGITS.astype("float64"))
    want = (pi * np.log(pi)).sum((-1, -2)) + 2 * np.log(4)  # (B,)
    np.testing.assert_allclose(layer.kl_divergence([LOGITS]), want, rtol=1e-5)
    np.testing.assert_allclose(float(layer.losses[0]), want.mean(), rtol=1e-5)
    assert want.min() > 0.05  # not a trivially zero KL


def test_logits_free_bits_floor_each_categorical_variable():
    logits = np.zeros((4, 3, 2), "float32")
    logits[:, 0] = [[3.0, -3.0], [2.0, 0.0], [-4.0, 1.0], [0.0, 5.0]]
    logits[:, 1] = [[0.2, 0.0], [0.0, 0.1], [0.0, 0.0], [0.1, 0.1]]
    # variable 2 is uniform: KL 0.
    layer = KLRegularizer(free_bits=0.05, weight=3.0)
    layer(logits)
    pi = _softmax(logits.astype("float64"))
    per_var = ((pi * np.log(pi)).sum(-1) + np.log(2)).mean(0)  # (N,)
    assert per_var[0] > 0.05 and 0 < per_var[1] < 0.05
    np.testing.assert_allclose(per_var[2], 0.0, atol=1e-7)
    want = 3.0 * np.maximum(per_var, 0.05).sum()
    np.testing.assert_allclose(float(layer.losses[0]), want, rtol=1e-5)


def test_logits_shared_layer_checks():
    run_layer_test(
        KLRegularizer, {"weight": 0.7, "free_bits": 0.01, "seed": 2}, LOGITS,
        expected_output_shape=(6, 2, 4),
        expected_num_trainable_weights=0, expected_num_non_trainable_weights=1,
        expected_num_seed_generators=1, expected_num_losses=1,
    )


def test_prior_params_config_save_load_and_xla_fit(tmp_path):
    # run_layer_test takes flat lists of arrays, not [(loc, scale), (p_loc,
    # p_scale)]: its checks are done here by hand.
    kwargs = {"weight": 0.5, "free_bits": 0.01, "seed": 3}
    layer = KLRegularizer(**kwargs)
    config = layer.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    assert KLRegularizer.from_config(config).get_config() == config

    x_in = keras.Input((5,), name="x")
    loc = keras.layers.Dense(3, name="loc")(x_in)
    scale = keras.layers.Dense(3, activation="softplus", name="scale")(x_in)
    p_loc = keras.layers.Dense(3, name="p_loc")(x_in)
    p_scale = keras.layers.Dense(3, activation="softplus", name="p_scale")(x_in)
    kl = KLRegularizer(**kwargs, name="kl")
    q_loc, q_scale = kl([(loc, scale), (p_loc, p_scale)])
    out = keras.layers.Dense(1, name="probe")(
        keras.layers.Concatenate()([q_loc, q_scale]))
    model = keras.Model(x_in, out)
    feats = RNG.normal(size=(16, 5)).astype("float32")

    # The model's loss is the KL of the params it computes.
    model(feats)
    params = keras.Model(x_in, [loc, scale, p_loc, p_scale])(feats)
    per_dim = _kl_diag(*params).mean(0)
    np.testing.assert_allclose(
        float(model.losses[0]), 0.5 * np.maximum(per_dim, 0.01).sum(), rtol=1e-5
    )

    model.save(tmp_path / "kl_prior_params.keras")
    loaded = keras.saving.load_model(tmp_path / "kl_prior_params.keras",
                                     safe_mode=True)
    assert loaded.get_layer("kl").get_config() == model.get_layer("kl").get_config()
    np.testing.assert_array_equal(loaded.predict(feats, verbose=0),
                                  model.predict(feats, verbose=0))
    loaded(feats)
    model(feats)  # (predict leaves the traced, symbolic losses behind)
    np.testing.assert_allclose(float(loaded.losses[0]),
                               float(model.losses[0]), rtol=1e-6)

    # One XLA fit step: the KL is the only path to the prior's weights.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse",
                  jit_compile=True)
    before = model.get_layer("p_loc").kernel.numpy().copy()
    hist = model.fit(feats, np.zeros((16, 1), "float32"), batch_size=16,
                     epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][-1])
    assert not np.allclose(model.get_layer("p_loc").kernel.numpy(), before)

    # Under mixed_float16 (float16 params in, float32 KL out), finite.
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x_in = keras.Input((5,))
        dense = [keras.layers.Dense(3, activation=a)(x_in)
                 for a in (None, "softplus", None, "softplus")]
        q = KLRegularizer(**kwargs)([tuple(dense[:2]), tuple(dense[2:])])
        mixed = keras.Model(x_in, keras.layers.Dense(1)(q[0]))
        mixed.compile(optimizer="sgd", loss="mse", jit_compile=True)
        hist = mixed.fit(feats, np.zeros((16, 1), "float32"), batch_size=16,
                         epochs=1, verbose=0)
        assert np.isfinite(hist.history["loss"][-1])
    finally:
        keras.mixed_precision.set_global_policy("float32")
