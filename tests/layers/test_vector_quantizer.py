"""VectorQuantizer: assignment, straight-through gradient, losses, EMA,
restarts, k-means initialisation, usage metrics, XLA, mixed precision,
saving and a small training run (NumPy re-derivations throughout)."""

import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae import VectorQuantizer
from tests.helpers import run_layer_test

RNG = np.random.default_rng(0)


def _np_assign(z, codebook):
    """Nearest code by brute force: (N,) indices and (N, K) distances."""
    d = ((z[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)
    return d.argmin(-1), d


def _layer(codebook, **kwargs):
    """A built layer whose codebook (and EMA sums) are `codebook`."""
    codebook = np.asarray(codebook, "float32")
    layer = VectorQuantizer(codebook.shape[0], **kwargs)
    layer.build((None, codebook.shape[1]))
    layer.codebook.assign(codebook)
    if layer.ema_decay is not None:
        layer.ema_sum.assign(codebook)
    return layer


def _separated(n, k=5, d=3, spread=0.1, seed=0):
    """Points near k well-separated centres: (points, centres)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype("float32") * 4.0
    which = rng.integers(0, k, size=n)
    points = centres[which] + spread * rng.normal(size=(n, d))
    return points.astype("float32"), centres


# ------------------------------------------------------ shared checks
@pytest.mark.parametrize(
    "kwargs, shape, counts",
    [({"num_codes": 5, "seed": 1}, (6, 3, 4), (0, 7, 1)),
     ({"num_codes": 5, "seed": 1, "ema_decay": None, "kmeans_init": True,
       "kmeans_iters": 2, "l2_normalize": True,
       "codebook_initializer": keras.initializers.RandomNormal(seed=3)},
      (6, 2, 2, 4), (1, 5, 2))],
    ids=["ema", "codebook_loss_kmeans_l2"],
)
def test_shared_layer_checks(kwargs, shape, counts):
    # EMA: codebook, ema_count, ema_sum, usage_step, last_used,
    # last_perplexity, idle_steps (non-trainable); one loss (commitment).
    # Codebook loss: trainable codebook; kmeans_done + usage (4) + idle;
    # two losses (commitment, codebook).
    run_layer_test(
        VectorQuantizer, kwargs, RNG.normal(size=shape).astype("float32"),
        expected_output_shape=shape, training_arg=True,
        expected_num_trainable_weights=counts[0],
        expected_num_non_trainable_weights=counts[1],
        expected_num_seed_generators=1, expected_num_losses=counts[2],
    )


# ------------------------------------------------- assignment and loss
def test_nearest_code_matches_numpy_argmin():
    codebook = RNG.normal(size=(7, 3)).astype("float32")
    x = RNG.normal(size=(4, 5, 3)).astype("float32")
    layer = _layer(codebook)
    want, dist = _np_assign(x.reshape(-1, 3), codebook)
    np.testing.assert_array_equal(layer.codes(x).numpy(), want.reshape(4, 5))
    np.testing.assert_allclose(layer.distances(x).numpy().reshape(-1, 7),
                               dist, rtol=1e-5, atol=1e-5)
    for training in (False, True):
        out = _layer(codebook)(x, training=training).numpy()
        np.testing.assert_array_equal(out, codebook[want].reshape(x.shape))
    # lookup(codes(x)) is exactly the forward pass.
    np.testing.assert_array_equal(layer.lookup(layer.codes(x)).numpy(),
                                  layer(x).numpy())
    assert layer.num_codes == 7 and layer.log_num_codes == np.log(7)


def test_l2_normalized_assignment_is_by_cosine():
    codebook = RNG.normal(size=(6, 4)).astype("float32") * [[1], [5], [1],
                                                            [9], [1], [2]]
    x = RNG.normal(size=(20, 4)).astype("float32") * 3.0
    layer = _layer(codebook, l2_normalize=True)
    unit = codebook / np.linalg.norm(codebook, axis=-1, keepdims=True)
    xn = x / np.linalg.norm(x, axis=-1, keepdims=True)
    want = (xn @ unit.T).argmax(-1)
    np.testing.assert_array_equal(layer.codes(x).numpy(), want)
    np.testing.assert_allclose(layer(x).numpy(), unit[want], atol=1e-6)


@pytest.mark.parametrize("ema_decay", [0.99, None])
def test_straight_through_gradient_is_the_identity(ema_decay):
    codebook = RNG.normal(size=(5, 3)).astype("float32")
    x = tf.constant(RNG.normal(size=(4, 2, 3)).astype("float32"))
    w = tf.constant(RNG.normal(size=(4, 2, 3)).astype("float32"))
    layer = _layer(codebook, ema_decay=ema_decay, restart_after_steps=None)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(w * layer(x, training=True))
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), w.numpy(),
                               rtol=1e-6)


@pytest.mark.parametrize("ema_decay", [0.99, None])
def test_losses_and_their_gradients_match_the_formulas(ema_decay):
    beta = 0.3
    codebook = RNG.normal(size=(5, 3)).astype("float32")
    x = RNG.normal(size=(8, 3)).astype("float32")
    k, _ = _np_assign(x, codebook)
    e = codebook[k]
    size = x.size
    layer = _layer(codebook, ema_decay=ema_decay, commitment_cost=beta,
                   restart_after_steps=None)
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        layer(xt, training=True)
        losses = list(layer.losses)
        total = tf.add_n(losses)
    commitment = beta * np.mean((x - e) ** 2)
    np.testing.assert_allclose(float(losses[0]), commitment, rtol=1e-5)
    # The commitment loss moves only the encoder output:
    # d/dx = 2 beta (x - e) / size; the codebook loss does not move it.
    np.testing.assert_allclose(tape.gradient(total, xt).numpy(),
                               2 * beta * (x - e) / size, rtol=1e-4,
                               atol=1e-7)
    if ema_decay is not None:
        assert len(losses) == 1
        assert layer.trainable_weights == []
        return
    assert len(losses) == 2
    np.testing.assert_allclose(float(losses[1]), np.mean((x - e) ** 2),
                               rtol=1e-5)
    # The codebook loss moves only the codes:
    # d/de_j = -2 sum_{i: k_i = j} (x_i - e_j) / size.
    want = np.zeros_like(codebook)
    np.add.at(want, k, -2.0 * (x - e) / size)
    np.testing.assert_allclose(tf.convert_to_tensor(
        tape.gradient(total, layer.codebook)).numpy(),
                               want, rtol=1e-4, atol=1e-7)


# ------------------------------------------------- codebook updates
def test_one_ema_step_matches_the_closed_form():
    g, eps = 0.9, 0.01
    codebook = RNG.normal(size=(4, 3)).astype("float32")
    count = np.array([2.0, 0.5, 3.0, 1.0], "float32")
    total = RNG.normal(size=(4, 3)).astype("float32")
    x = RNG.normal(size=(2, 5, 3)).astype("float32")
    layer = _layer(codebook, ema_decay=g, epsilon=eps,
                   restart_after_steps=None)
    layer.ema_count.assign(count)
    layer.ema_sum.assign(total)
    out = layer(x, training=True).numpy()

    z = x.reshape(-1, 3)
    k, _ = _np_assign(z, codebook)
    n_k = np.bincount(k, minlength=4)
    s_k = np.zeros((4, 3))
    np.add.at(s_k, k, z)
    new_count = g * count + (1 - g) * n_k
    new_total = g * total + (1 - g) * s_k
    n = new_count.sum()
    smoothed = (new_count + eps) / (n + 4 * eps) * n
    np.testing.assert_allclose(layer.ema_count.numpy(), new_count, rtol=1e-6)
    np.testing.assert_allclose(layer.ema_sum.numpy(), new_total, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(layer.codebook.numpy(),
                               new_total / smoothed[:, None], rtol=1e-5,
                               atol=1e-6)
    # The step quantised with the codebook it started from.
    np.testing.assert_array_equal(out.reshape(-1, 3), codebook[k])


@pytest.mark.parametrize("ema_decay", [0.99, None])
def test_a_dead_code_is_reseeded_after_exactly_the_stated_steps(ema_decay):
    steps = 4
    codebook = np.array([[0, 0], [1, 1], [-1, 1], [50, 50]], "float32")
    layer = _layer(codebook, ema_decay=ema_decay, seed=3,
                   restart_after_steps=steps)
    batches = [RNG.normal(size=(6, 2)).astype("float32") * 0.5
               for _ in range(steps)]
    for t, x in enumerate(batches, start=1):
        layer(x, training=True)
        row = layer.codebook.numpy()[3]
        is_input = np.any(np.all(x == row, axis=-1))
        if t < steps:  # not yet: far away, not one of the features
            assert np.linalg.norm(row) > 40 and not is_input, (t, row)
            assert layer.idle_steps.numpy()[3] == t
        else:  # re-seeded with a feature of this very batch
            assert is_input, (t, row)
            assert layer.idle_steps.numpy()[3] == 0
            if ema_decay is not None:
                assert layer.ema_count.numpy()[3] == 1.0
                np.testing.assert_array_equal(layer.ema_sum.numpy()[3], row)
    # Used codes never count as idle.
    assert layer.idle_steps.numpy()[0] == 0


def test_kmeans_initialisation_from_the_first_training_batch():
    x, centres = _separated(400, k=4, d=3, spread=0.05)
    layer = _layer(np.full((4, 3), 30.0), kmeans_init=True, kmeans_iters=25,
                   seed=0, restart_after_steps=None, ema_decay=None)
    layer(x, training=False)  # inference does not initialise
    np.testing.assert_array_equal(layer.codebook.numpy(), 30.0)
    layer(x, training=True)
    assert int(layer.kmeans_done.numpy()) == 1
    init = layer.codebook.numpy()
    # A Lloyd fixed point: each used code is the mean of its points.
    k, _ = _np_assign(x, init)
    assert len(np.unique(k)) >= 3
    for j in np.unique(k):
        np.testing.assert_allclose(init[j], x[k == j].mean(0), atol=1e-4)
    # The second training call does not re-initialise.
    layer(x + 1.0, training=True)
    np.testing.assert_array_equal(layer.codebook.numpy(), init)


def test_usage_metrics_follow_a_numpy_window():
    codebook = np.array([[0.0], [10.0], [20.0], [30.0]], "float32")
    layer = _layer(codebook, ema_decay=None, restart_after_steps=None,
                   usage_window=3)
    assert float(layer.usage_metrics()["codebook_usage"]) == 0.0
    used = [[0, 0, 0, 1], [0, 0, 0, 0], [2, 2, 0, 0], [0, 0, 0, 0],
            [0, 0, 0, 0]]
    for t, codes in enumerate(used):
        x = codebook[codes] + 0.1
        layer(x, training=True)
        p = np.bincount(codes, minlength=4) / len(codes)
        p = p[p > 0]
        recent = set().union(*used[max(0, t - 2):t + 1])
        m = layer.usage_metrics()
        np.testing.assert_allclose(float(m["perplexity"]),
                                   np.exp(-(p * np.log(p)).sum()), rtol=1e-6)
        assert float(m["codebook_usage"]) == len(recent) / 4, t
    # With codes given, the perplexity of those codes.
    given = layer.usage_metrics(tf.constant([[0, 1], [2, 3]]))
    np.testing.assert_allclose(float(given["perplexity"]), 4.0, rtol=1e-6)


# ------------------------------------------ XLA, precision, saving
def test_xla_and_eager_agree():
    codebook = RNG.normal(size=(6, 3)).astype("float32")
    x = tf.constant(RNG.normal(size=(5, 4, 3)).astype("float32"))
    eager, xla = _layer(codebook), _layer(codebook)

    @tf.function(jit_compile=True)
    def step(inputs):
        out = xla(inputs, training=True)
        return out, xla.losses[0], xla.codes(inputs)

    out_x, loss_x, codes_x = step(x)
    out_e = eager(x, training=True)
    np.testing.assert_array_equal(out_x.numpy(), out_e.numpy())
    np.testing.assert_allclose(float(loss_x), float(eager.losses[0]),
                               rtol=1e-6)
    for a, b in zip(xla.weights, eager.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6,
                                   atol=1e-7, err_msg=a.path)
    np.testing.assert_array_equal(codes_x.numpy(), eager.codes(x).numpy())


def test_mixed_precision_keeps_distances_in_float32():
    # |z|^2 = 90000 overflows float16 (max 65504): distances computed in
    # float16 would be inf/nan and the assignment arbitrary.
    codebook = np.array([[300.0, 0.0], [302.0, 0.0], [0.0, 300.0]],
                        "float32")
    x = np.array([[300.0, 1.0], [302.0, -1.0], [1.0, 298.0], [301.5, 0.0]],
                 "float16")
    want = _layer(codebook).codes(x.astype("float32")).numpy()
    np.testing.assert_array_equal(want, [0, 1, 2, 1])
    keras.mixed_precision.set_global_policy("mixed_float16")
    layer = _layer(codebook)
    assert layer.codebook.dtype == "float32"
    assert layer.distances(x).dtype == tf.float32
    np.testing.assert_array_equal(layer.codes(x).numpy(), want)
    out = layer(tf.constant(x), training=True)
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), codebook[want])
    assert np.isfinite(float(layer.losses[0]))


def test_keras_round_trip_keeps_codebook_and_statistics():
    x, _ = _separated(64, k=6, d=4)
    inp = keras.Input((4,))
    vq = VectorQuantizer(8, seed=2, restart_after_steps=2, kmeans_init=True)
    out = keras.layers.Dense(4)(vq(inp))
    model = keras.Model(inp, out)
    model.compile(optimizer="sgd", loss="mse", jit_compile=False)
    model.fit(x, x, batch_size=16, epochs=2, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "vq.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    vq2 = loaded.layers[1]
    assert int(vq.usage_step.numpy()) == 8
    for a, b in zip(vq.weights, vq2.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_array_equal(vq.seed_generator.state.numpy(),
                                  vq2.seed_generator.state.numpy())
    # Training continues identically (the same restarts' draws).
    for m in (model, loaded):
        m.compile(optimizer="sgd", loss="mse", jit_compile=False)
        m.fit(x, x, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(vq.weights, vq2.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6,
                                   err_msg=a.path)


# ------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, name",
    [({"num_codes": 1}, "num_codes"), ({"num_codes": 2.0}, "num_codes"),
     ({"num_codes": True}, "num_codes"),
     ({"num_codes": 4, "ema_decay": 1.0}, "ema_decay"),
     ({"num_codes": 4, "epsilon": 0.0}, "epsilon"),
     ({"num_codes": 4, "commitment_cost": -1.0}, "commitment_cost"),
     ({"num_codes": 4, "restart_after_steps": 0}, "restart_after_steps"),
     ({"num_codes": 4, "usage_window": 0}, "usage_window"),
     ({"num_codes": 4, "kmeans_init": 1}, "kmeans_init")],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"argument `{name}`.*Received"):
        VectorQuantizer(**kwargs)


def test_feature_axis_must_match_the_codebook():
    layer = VectorQuantizer(4)
    layer(np.zeros((2, 3), "float32"))
    for call in (layer, layer.codes, layer.distances):
        with pytest.raises(ValueError, match=r"code dimension 3.*\(2, 5\)"):
            call(np.zeros((2, 5), "float32"))
    with pytest.raises(ValueError, match="code dimension 3"):
        layer(keras.Input((7,)))


def test_lookup_rejects_codes_out_of_range():
    layer = _layer(RNG.normal(size=(4, 2)))
    for bad in ([0, 4], [[-1, 2]]):
        with pytest.raises(ValueError, match=r"`codes`.*\[0, 4\)"):
            layer.lookup(tf.constant(bad))
    with pytest.raises(ValueError, match="integer codes"):
        layer.lookup(tf.constant([0.0, 1.0]))
    graph_lookup = tf.function(layer.lookup)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 4\)"):
        graph_lookup(tf.constant([1, 5]))
    np.testing.assert_array_equal(graph_lookup(tf.constant([1, 3])).numpy(),
                                  layer.codebook.numpy()[[1, 3]])


# ------------------------------------------------------ training run
def _train(quantizer, x, epochs):
    keras.utils.set_random_seed(0)
    inp = keras.Input((x.shape[1],))
    h = keras.layers.Dense(4, name="encoder")(inp)
    out = keras.layers.Dense(x.shape[1], name="decoder")(quantizer(h))
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse",
                  jit_compile=True)
    model.fit(x, x, batch_size=256, epochs=epochs, verbose=0)
    codes = quantizer.codes(model.get_layer("encoder")(x)).numpy()
    used = len(np.unique(codes)) / quantizer.num_codes
    mse = float(np.mean((model.predict(x, verbose=0) - x) ** 2))
    return used, float(quantizer.usage_metrics()["codebook_usage"]), mse


@pytest.mark.slow
def test_ema_with_restarts_uses_the_codebook_where_the_plain_loss_collapses():
    # 64 clusters, 16 codes, every code initialised in a tiny far region.
    x, _ = _separated(2048, k=64, d=8, spread=0.05, seed=1)
    bad = keras.initializers.RandomUniform(10.0, 10.01, seed=0)
    fixed = _train(VectorQuantizer(16, codebook_initializer=bad, seed=0,
                                   restart_after_steps=10, usage_window=10),
                   x, epochs=12)
    plain = _train(VectorQuantizer(16, codebook_initializer=bad, seed=0,
                                   ema_decay=None, restart_after_steps=None,
                                   usage_window=10),
                   x, epochs=12)
    # Codes used over the whole data set, and the layer's windowed metric.
    assert fixed[0] >= 0.9 and fixed[1] >= 0.9, fixed
    assert plain[0] <= 0.25 and plain[1] <= 0.25, plain
    assert fixed[2] < 0.8 * plain[2], (fixed, plain)


@pytest.mark.parametrize("ema_decay", [0.9, None], ids=["ema", "loss"])
def test_quantize_with_losses_is_the_call_without_add_loss(ema_decay):
    """The same output, the same losses (that the call adds) and the same
    statistics updates, with nothing added to `layer.losses`."""
    books = RNG.normal(size=(4, 3)).astype("float32")
    x = RNG.normal(size=(8, 3)).astype("float32")
    called, direct = (_layer(books, ema_decay=ema_decay, seed=0)
                      for _ in range(2))
    want = called(x, training=True)
    got, losses = direct.quantize_with_losses(x, training=True)
    np.testing.assert_array_equal(got, want)
    assert len(losses) == len(called.losses) == (1 if ema_decay else 2)
    for a, b in zip(losses, called.losses):
        np.testing.assert_array_equal(a, b)
    assert not direct.losses
    for a, b in zip(direct.weights, called.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert direct.quantize_with_losses(x, training=False)[1] == []
