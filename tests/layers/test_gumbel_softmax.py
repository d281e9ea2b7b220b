import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import stats

from keras_vae.layers.gumbel_softmax_head import GumbelSoftmaxHead
from keras_vae.layers.gumbel_softmax_sample import GumbelSoftmaxSample
from keras_vae.posteriors import categorical_posterior
from tests.helpers import run_layer_test

tfd = tfp.distributions
RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(6, 3, 4)).astype("float32")
FEATURES = RNG.normal(size=(6, 5)).astype("float32")
SEED = tf.constant([3, 7])


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ------------------------------------------------------------------ head
@pytest.mark.parametrize("shape", [(6, 5), (6, 2, 3)], ids=["flat", "rank3"])
def test_head_shared_layer_checks(shape):
    run_layer_test(
        GumbelSoftmaxHead, {"num_variables": 3, "num_classes": 4},
        RNG.normal(size=shape).astype("float32"),
        expected_output_shape=(6, 3, 4),
        expected_num_trainable_weights=2, expected_num_non_trainable_weights=0,
        expected_num_seed_generators=0, expected_num_losses=0,
    )


def test_head_is_a_reshaped_dense_and_params_size():
    assert GumbelSoftmaxHead.params_size(3, 4) == 12
    head = GumbelSoftmaxHead(3, 4, bias_initializer="random_normal")
    logits = head(FEATURES).numpy()
    w = head.logits_dense.kernel.numpy()
    b = head.logits_dense.bias.numpy()
    np.testing.assert_allclose(
        logits, (FEATURES @ w + b).reshape(6, 3, 4), rtol=1e-5, atol=1e-6
    )


def test_head_output_is_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    head = GumbelSoftmaxHead(3, 4)
    out = head(FEATURES)
    assert out.dtype == tf.float32
    assert head.logits_dense.compute_dtype == "float16"
    sym = head(keras.Input((5,)))
    assert sym.dtype == "float32" and tuple(sym.shape) == (None, 3, 4)


# ------------------------------------------------------------ the sampler
@pytest.mark.parametrize(
    "kwargs",
    [{"seed": 7}, {"seed": 7, "inference": "sample"},
     {"seed": 2, "temperature": 1.5, "straight_through": True}],
    ids=["mode", "sample", "straight_through"],
)
def test_sample_shared_layer_checks(kwargs):
    run_layer_test(
        GumbelSoftmaxSample, kwargs, LOGITS, expected_output_shape=(6, 3, 4),
        training_arg=True,
        # The temperature is a non-trainable weight (annealed by a callback).
        expected_num_trainable_weights=0, expected_num_non_trainable_weights=1,
        expected_num_seed_generators=1, expected_num_losses=0,
    )


def test_hard_draws_are_one_hot_with_softmax_frequencies():
    logits = np.array([[[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, -3.0]]],
                      "float32")
    n = 100_000
    z, log_q = GumbelSoftmaxSample(seed=1).draw_latent(
        [logits], num_samples=n, training=False
    )
    assert log_q is None
    z = z.numpy()
    assert z.shape == (n, 2, 4)
    assert set(np.unique(z)) == {0.0, 1.0}
    np.testing.assert_array_equal(z.sum(-1), 1.0)
    # Pearson chi-square over both latents: N (C - 1) = 6 degrees of freedom.
    expected = n * _softmax(logits[0])
    chi2 = np.sum((z.sum(0) - expected) ** 2 / expected)
    assert chi2 < stats.chi2.ppf(0.999, df=6), chi2


def test_draws_are_sample_major():
    # Row 0 is (almost surely) class 0, row 1 class 2: the rows of K draws
    # must alternate 0, 2, 0, 2, ... (draw k holds rows k*B ... k*B + B - 1).
    logits = np.full((2, 1, 3), -30.0, "float32")
    logits[0, 0, 0] = logits[1, 0, 2] = 30.0
    layer = GumbelSoftmaxSample(seed=0)
    for training in (True, False):
        z, _ = layer.draw_latent([logits], num_samples=5, training=training)
        np.testing.assert_array_equal(
            np.argmax(z.numpy()[:, 0], -1), [0, 2] * 5
        )


@pytest.mark.parametrize("temperature", [0.3, 1.0])
def test_relaxed_draws_follow_tfp_relaxed_one_hot_categorical(temperature):
    logits = np.array([[[1.0, 0.0, -1.0], [0.0, 0.5, 0.0]]], "float32")
    n = 50_000
    ours = GumbelSoftmaxSample(temperature=temperature).draw(
        logits, n, seed=SEED
    ).numpy()
    np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-5)
    assert ours.min() >= 0.0
    ref_dist = tfd.RelaxedOneHotCategorical(temperature, logits=logits[0])
    ref = ref_dist.sample(n, seed=tf.constant([1, 2])).numpy()
    # Means of every coordinate agree within 5 standard errors.
    se = np.sqrt(ours.var(0) / n + ref.var(0) / n)
    assert np.all(np.abs(ours.mean(0) - ref.mean(0)) < 5 * se)
    # The marginal law of each coordinate: two-sample Kolmogorov-Smirnov.
    for i in range(2):
        for c in range(3):
            p = stats.ks_2samp(ours[:, i, c], ref[:, i, c]).pvalue
            assert p > 1e-4, (i, c, p)
    # Joint law through TFP's Concrete density: E[log p(y)] agrees.
    lp_ours = ref_dist.log_prob(ours).numpy().sum(-1)
    lp_ref = ref_dist.log_prob(ref).numpy().sum(-1)
    se = np.sqrt(lp_ours.var() / n + lp_ref.var() / n)
    assert abs(lp_ours.mean() - lp_ref.mean()) < 5 * se


def test_relaxed_draws_tend_to_the_hard_draw_as_temperature_falls():
    hard = GumbelSoftmaxSample().draw(LOGITS, 200, seed=SEED, hard=True)
    gaps = []
    for temperature in (2.0, 0.5, 0.1, 0.01):
        soft = GumbelSoftmaxSample(temperature=temperature).draw(
            LOGITS, 200, seed=SEED
        ).numpy()
        # The same noise: the relaxed draw's argmax is the hard draw.
        np.testing.assert_array_equal(
            np.argmax(soft, -1), np.argmax(hard, -1)
        )
        gaps.append(np.mean(np.abs(soft - hard.numpy())))
    # The mean distance to the one-hot draw falls about in proportion to tau
    # (it comes from the draws whose top two perturbed logits are within
    # O(tau) of each other).
    assert np.all(np.diff(gaps) < 0), gaps
    assert gaps[-1] < 0.01 and gaps[-1] < 0.2 * gaps[-2], gaps


def test_gradient_of_the_relaxed_draw_is_the_softmax_jacobian():
    tau = 0.7
    weights = RNG.normal(size=LOGITS.shape).astype("float32")
    logits = tf.Variable(LOGITS)
    with tf.GradientTape() as tape:
        y = GumbelSoftmaxSample(temperature=tau, seed=4)(logits, training=True)
        total = tf.reduce_sum(weights * y)
    grad = tape.gradient(total, logits).numpy()
    y = y.numpy()
    # d/dl_c sum_j w_j y_j = y_c (w_c - sum_j w_j y_j) / tau
    want = y * (weights - np.sum(weights * y, -1, keepdims=True)) / tau
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-6)
    assert np.all(np.abs(grad).sum(-1) > 0)

    # Straight-through: one-hot forward, the same gradient backward.
    with tf.GradientTape() as tape:
        z = GumbelSoftmaxSample(temperature=tau, seed=4, straight_through=True)(
            logits, training=True
        )
        total = tf.reduce_sum(weights * z)
    np.testing.assert_array_equal(
        z.numpy(), np.eye(4, dtype="float32")[np.argmax(y, -1)]
    )
    np.testing.assert_allclose(tape.gradient(total, logits), want, rtol=1e-4,
                               atol=1e-6)


@pytest.mark.parametrize("hard", [False, True], ids=["relaxed", "hard"])
def test_same_draws_with_and_without_xla(hard):
    eager = GumbelSoftmaxSample(seed=9).draw(LOGITS, 3, hard=hard)
    xla_layer = GumbelSoftmaxSample(seed=9)
    xla = tf.function(
        lambda: xla_layer.draw(LOGITS, 3, hard=hard), jit_compile=True
    )()
    # Same bits; TF's and XLA's log / exp may differ in the last ulp.
    np.testing.assert_allclose(eager, xla, rtol=1e-5, atol=1e-6)
    if hard:
        np.testing.assert_array_equal(eager, xla)
    # The fixed-seed path of `draw_latent` (what VAEModel uses).
    layer = GumbelSoftmaxSample(seed=1)
    eager, _ = layer.draw_latent([LOGITS], num_samples=2, seed=SEED,
                                 training=not hard)
    xla = tf.function(
        lambda: layer.draw_latent([LOGITS], num_samples=2, seed=SEED,
                                  training=not hard)[0],
        jit_compile=True,
    )()
    np.testing.assert_allclose(eager, xla, rtol=1e-5, atol=1e-6)


def test_compiled_draw_reads_the_annealed_temperature(tmp_path):
    layer = GumbelSoftmaxSample(temperature=1.0)
    draw = tf.function(lambda: layer.draw(LOGITS, 1, seed=SEED),
                       jit_compile=True)
    at_one = draw().numpy()
    layer.temperature_variable.assign(0.2)
    at_fifth = draw().numpy()  # the same compiled function
    np.testing.assert_allclose(
        at_one, GumbelSoftmaxSample(1.0).draw(LOGITS, 1, seed=SEED),
        rtol=1e-5, atol=1e-6,
    )
    np.testing.assert_allclose(
        at_fifth, GumbelSoftmaxSample(0.2).draw(LOGITS, 1, seed=SEED),
        rtol=1e-5, atol=1e-6,
    )
    # The annealed value is saved with the weights; the config keeps the
    # initial one.
    inp = keras.Input((3, 4))
    model = keras.Model(inp, layer(inp))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    revived = loaded.layers[-1]
    assert revived.temperature == 1.0
    np.testing.assert_allclose(revived.temperature_variable.numpy(), 0.2)


def test_mode_inference_modes_and_exact_log_q():
    mode = np.eye(4, dtype="float32")[np.argmax(LOGITS, -1)]
    layer = GumbelSoftmaxSample(seed=5)
    np.testing.assert_array_equal(layer.mode([LOGITS]), mode)
    np.testing.assert_array_equal(layer(LOGITS, training=False), mode)
    np.testing.assert_array_equal(layer([LOGITS], training=False), mode)
    sampled = GumbelSoftmaxSample(seed=5, inference="sample")(LOGITS).numpy()
    np.testing.assert_array_equal(
        sampled, GumbelSoftmaxSample(seed=5).draw(LOGITS, 1, hard=True)
    )
    # On hard draws the posterior's log_prob is the exact log q(z | x).
    log_q = layer.posterior([LOGITS]).log_prob(sampled).numpy()
    log_pi = LOGITS - np.log(np.exp(LOGITS).sum(-1, keepdims=True))
    np.testing.assert_allclose(
        log_q, np.sum(sampled * log_pi, (1, 2)), rtol=1e-5
    )
    np.testing.assert_allclose(
        log_q, categorical_posterior(LOGITS).log_prob(sampled), rtol=1e-6
    )
    assert GumbelSoftmaxSample.num_params == 1
    assert not GumbelSoftmaxSample.sampled_kl


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (GumbelSoftmaxSample, {"temperature": 0.0},
         r"argument `temperature`.*Received: temperature=0.0"),
        (GumbelSoftmaxSample, {"temperature": -1},
         r"argument `temperature`.*Received: temperature=-1"),
        (GumbelSoftmaxSample, {"temperature": float("inf")},
         r"argument `temperature`.*Received: temperature=inf"),
        (GumbelSoftmaxSample, {"inference": "x"},
         r"argument `inference`.*Received: inference='x'"),
        (GumbelSoftmaxSample, {"straight_through": "yes"},
         r"argument `straight_through`.*Received: straight_through='yes'"),
        (GumbelSoftmaxSample, {"seed": 1.5}, r"argument `seed`"),
        (GumbelSoftmaxHead, {"num_variables": 3, "num_classes": 1},
         r"argument `num_classes`.*Received: num_classes=1"),
        (GumbelSoftmaxHead, {"num_variables": 0, "num_classes": 4},
         r"argument `num_variables`.*Received: num_variables=0"),
    ],
)
def test_bad_arguments_are_named(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_bad_logits_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Received: shape=\(None, 4\)"):
        GumbelSoftmaxSample()(keras.Input((4,)))
    with pytest.raises(ValueError, match=r"C >= 2"):
        GumbelSoftmaxSample()(keras.Input((3, 1)))
