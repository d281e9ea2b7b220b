"""Score-function gradients of hard categorical latents: REINFORCE with
NVIL's control variates (ELBO) and VIMCO (IWAE), against exact gradients
by enumerating the latent."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae.losses import BernoulliNLL
from keras_vae.objectives import ELBO, IWAE, score_function
from keras_vae.objectives.score_function import vimco_advantages
from tests.objectives import estimator_checks as ec

CLASSES = 3
REPEATS = 60  # estimator calls, each averaging 64 draws per row


def _compiled(objective, seed=0):
    vae = ec.categorical_vae(CLASSES, seed=seed)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL(),
                objective=objective)
    return vae


def _train_baseline(vae, x, steps=30):
    """Fits a few steps so the learned baseline is not zero, then the
    gradient checks run at the weights reached."""
    vae.fit(x, batch_size=64, epochs=1, steps_per_epoch=steps, verbose=0)


@pytest.mark.parametrize("baseline", ["none", "running", "learned"])
def test_elbo_estimators_are_unbiased(baseline):
    # Every weight at once: the encoder's (score-function term) and the
    # decoder's (pathwise), each coordinate against the enumeration.
    x, rows = ec.data()
    vae = _compiled(ELBO(baseline=baseline, normalize_signal=False))
    if baseline != "none":
        _train_baseline(vae, x)
    exact = ec.exact_elbo_gradient(vae, rows, CLASSES, "both")
    samples = ec.draws(ec.estimator(vae, x, "both"), REPEATS)
    ec.assert_unbiased(samples, exact)
    for part, g in ec.split_parts(vae, exact).items():
        assert np.abs(g).max() > 1e-3, part  # a gradient worth checking


def test_vimco_is_unbiased_for_the_iwae_gradient():
    x, rows = ec.data()
    vae = _compiled(IWAE(num_samples=3))
    exact = ec.exact_iwae_gradient(vae, rows, CLASSES, 3, "both")
    samples = ec.draws(ec.estimator(vae, x, "both"), REPEATS)
    ec.assert_unbiased(samples, exact)
    for part, g in ec.split_parts(vae, exact).items():
        assert np.abs(g).max() > 1e-3, part


def test_control_variates_lower_the_encoder_gradient_variance():
    """Same weights, same noise stream: the encoder gradient's total
    variance under plain REINFORCE over that with NVIL's baselines."""
    x, _ = ec.data()
    vae = _compiled(ELBO(baseline="learned", normalize_signal=False))
    _train_baseline(vae, x, steps=60)
    learned = ec.draws_from(vae, ec.estimator(vae, x, "encoder"), 40)
    frozen = keras.optimizers.SGD(learning_rate=0.0)  # weights stay put
    vae.compile(optimizer=frozen, loss=BernoulliNLL(),
                objective=ELBO(baseline="running", normalize_signal=False))
    _train_baseline(vae, x, steps=30)  # only the running mean moves
    running = ec.draws_from(vae, ec.estimator(vae, x, "encoder"), 40)
    vae.compile(loss=BernoulliNLL(), objective=ELBO(baseline="none"))
    plain = ec.draws_from(vae, ec.estimator(vae, x, "encoder"), 40)
    total = {name: s.var(0, ddof=1).sum() for name, s in
             (("none", plain), ("running", running), ("learned", learned))}
    ratios = {k: total["none"] / total[k] for k in ("running", "learned")}
    print("encoder gradient variance reduction vs plain REINFORCE:", ratios)
    assert ratios["running"] > 20.0
    assert ratios["learned"] > 20.0


def test_vimco_advantages_by_hand():
    log_w = np.array([[0.0, 1.0], [2.0, -1.0], [-1.0, 0.5]], "float32")
    got = vimco_advantages(tf.constant(log_w)).numpy()
    k = 3
    for b in range(2):
        w = log_w[:, b]
        bound = np.log(np.mean(np.exp(w)))
        for j in range(k):
            others = np.delete(w, j)
            loo = w.copy()
            loo[j] = others.mean()
            assert got[j, b] == pytest.approx(
                bound - np.log(np.mean(np.exp(loo))), abs=1e-5
            )


def test_reported_loss_is_the_bound_not_the_surrogate():
    x, _ = ec.data(repeat=8)
    for objective in (ELBO(), IWAE(num_samples=4)):
        vae = _compiled(objective)
        loss, metrics = vae.compute_objective(x, training=False)
        if isinstance(objective, ELBO):
            np.testing.assert_allclose(loss, -metrics["elbo"], rtol=1e-5)
        else:
            assert float(loss) <= -float(metrics["elbo"]) + 1e-4


def test_log_likelihood_scores_the_discrete_model_exactly():
    x, rows = ec.data(repeat=1)
    vae = _compiled(ELBO())
    exact = ec.exact_log_likelihood(vae, rows, CLASSES)
    estimate = vae.log_likelihood(rows, num_samples=2000)
    se = ec.log_likelihood_standard_error(vae, rows, CLASSES, 2000)
    assert np.all(np.abs(estimate - exact) < 4 * se + 1e-4), (
        estimate - exact, se)


def test_baseline_network_saves_loads_and_keeps_training(tmp_path):
    x, _ = ec.data(repeat=16)
    vae = _compiled(ELBO())
    vae.fit(x, batch_size=32, epochs=1, steps_per_epoch=1, verbose=0)
    layer = vae.objective_layer
    assert layer.signal_mean.numpy()[0] != 0.0  # the running mean moved
    path = tmp_path / "vae.keras"
    vae.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.objective, ELBO)
    for a, b in zip(layer.weights, loaded.objective_layer.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    before = [w.numpy() for w in loaded.objective_layer.trainable_weights]
    loaded.fit(x, batch_size=32, epochs=1, steps_per_epoch=1, verbose=0)
    after = [w.numpy() for w in loaded.objective_layer.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_exported_categorical_model_scores_the_discrete_model(tmp_path):
    x, rows = ec.data(repeat=1)
    vae = _compiled(IWAE(num_samples=4))
    path = vae.export_serving(tmp_path / "sm", log_likelihood_samples=500)
    sig = tf.saved_model.load(path).signatures
    assert not any("baseline" in v.name for v in
                   tf.saved_model.load(path).variables)
    served = sig["log_likelihood"](x=rows)["log_likelihood"].numpy()
    exact = ec.exact_log_likelihood(vae, rows, CLASSES)
    se = ec.log_likelihood_standard_error(vae, rows, CLASSES, 500)
    assert np.all(np.abs(served - exact) < 4 * se + 1e-4), (served, exact)
    z = sig["encode"](x=rows)
    assert set(z) == {"logits"} or len(z) == 1


def test_running_statistics_update_only_in_training():
    x, _ = ec.data(repeat=8)
    vae = _compiled(ELBO(baseline="running"))
    state = vae.objective_layer.signal_mean.numpy().copy()
    vae.compute_objective(x, training=False)
    np.testing.assert_array_equal(vae.objective_layer.signal_mean, state)
    vae.compute_objective(x, training=True)
    assert vae.objective_layer.signal_mean.numpy()[0] != state[0]


def test_plain_reinforce_and_gaussian_models_carry_no_baseline():
    assert _compiled(ELBO(baseline="none")).objective_layer is None
    vae = ec.gaussian_vae()
    vae.compile(loss=BernoulliNLL(), objective=ELBO())
    assert vae.objective_layer is None


def test_a_new_compile_replaces_the_baseline_weights():
    vae = ec.categorical_vae()
    counts = []
    for objective in (ELBO(), ELBO(), ELBO(baseline="none")):
        vae.compile(loss=BernoulliNLL(), objective=objective)
        counts.append(len([w for w in vae.trainable_weights
                           if "baseline" in w.path]))
    assert counts == [4, 4, 0]


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="baseline"):
        ELBO(baseline="nvil")
    with pytest.raises(ValueError, match="baseline_decay"):
        ELBO(baseline_decay=1.0)
    vae = ec.categorical_vae()
    with pytest.raises(ValueError, match="gradient='dreg'.*not reparam"):
        vae.compile(loss=BernoulliNLL(), objective=IWAE(5, gradient="dreg"))
    with pytest.raises(ValueError, match="num_samples >= 2"):
        vae.compile(loss=BernoulliNLL(), objective=IWAE(num_samples=1))
    with pytest.raises(ValueError, match="not compiled.*compile"):
        ec.categorical_vae().compute_objective(np.zeros((2, ec.D), "float32"))


def _mixed_vae(nested):
    """A categorical level and a Gaussian level: side by side (both read
    x), or nested (the Gaussian's posterior also reads the categorical z)."""
    keras.utils.set_random_seed(0)
    x_in = keras.Input((ec.D,))
    h = keras.layers.Dense(16, activation="tanh")(x_in)
    logits = keras_vae.KLRegularizer()(keras_vae.GumbelSoftmaxHead(1, 3)(h))
    c = keras.layers.Flatten()(keras_vae.CategoricalSample(seed=1)(logits))
    g = keras.layers.Concatenate()([h, c]) if nested else h
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(g))
    z = keras_vae.ReparameterizedSample(seed=2)(q)
    out = keras.layers.Dense(ec.D)(keras.layers.Concatenate()([c, z]))
    return keras_vae.VAEModel(x_in, out)


def test_learning_signal_follows_the_levels_that_read_the_draw():
    x, _ = ec.data(repeat=1)
    for nested in (False, True):
        trace = _mixed_vae(nested).trace(x, num_samples=2)
        assert [l.sampler.reparameterized for l in trace.levels] == [
            False, True]
        assert score_function.descendants(trace, 0) == (
            [1] if nested else [])


@pytest.mark.parametrize("objective", [ELBO(), IWAE(num_samples=4)],
                         ids=["nvil", "vimco"])
def test_mixed_gaussian_and_categorical_levels_train(objective):
    x, _ = ec.data(repeat=32)
    vae = _mixed_vae(nested=True)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL(),
                objective=type(objective).from_config(objective.get_config()))
    elbo = vae.fit(x, batch_size=64, epochs=4, verbose=0).history["elbo"]
    assert elbo[-1] > elbo[0] + 0.3
    with tf.GradientTape() as tape:
        loss, _ = vae.compute_objective(x[:64])
    grads = tape.gradient(loss, vae.trainable_weights)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
