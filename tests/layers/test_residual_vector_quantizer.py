"""ResidualVectorQuantizer: greedy residual codes against NumPy, summed
lookup, straight-through gradient, per-stage losses, metrics, saving."""

import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae import ResidualVectorQuantizer
from tests.helpers import run_layer_test

RNG = np.random.default_rng(0)


def _rvq(codebooks, **kwargs):
    """A built RVQ whose stage codebooks are `codebooks` (Q, K, D)."""
    codebooks = np.asarray(codebooks, "float32")
    q, k, d = codebooks.shape
    layer = ResidualVectorQuantizer(q, k, **kwargs)
    layer.build((None, d))
    for stage, book in zip(layer.quantizers, codebooks):
        stage.codebook.assign(book)
        if stage.ema_decay is not None:
            stage.ema_sum.assign(book)
    return layer


def _np_residual_codes(z, codebooks):
    """Greedy residual quantisation by brute force: codes (N, Q), the
    residual each stage saw (Q, N, D) and the summed vectors (N, D)."""
    residual, codes, seen = z.copy(), [], []
    for book in codebooks:
        seen.append(residual.copy())
        k = ((residual[:, None] - book[None]) ** 2).sum(-1).argmin(-1)
        codes.append(k)
        residual = residual - book[k]
    return np.stack(codes, -1), np.stack(seen), z - residual


def test_shared_layer_checks():
    # Two stages, each: codebook, ema_count, ema_sum, usage_step, last_used,
    # last_perplexity, idle_steps; one commitment loss per stage.
    run_layer_test(
        ResidualVectorQuantizer,
        {"num_quantizers": 2, "num_codes": 5, "seed": 1,
         "codebook_initializer": keras.initializers.RandomNormal(seed=2)},
        RNG.normal(size=(6, 3, 4)).astype("float32"),
        expected_output_shape=(6, 3, 4), training_arg=True,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=14,
        expected_num_seed_generators=2, expected_num_losses=2,
    )


def test_codes_lookup_and_output_match_greedy_numpy():
    books = RNG.normal(size=(3, 6, 2)).astype("float32")
    books[1:] *= 0.3
    x = RNG.normal(size=(4, 5, 2)).astype("float32")
    layer = _rvq(books)
    codes, _, summed = _np_residual_codes(x.reshape(-1, 2), books)
    got = layer.codes(x).numpy()
    assert got.shape == (4, 5, 3) and got.dtype == np.int32
    np.testing.assert_array_equal(got.reshape(-1, 3), codes)
    np.testing.assert_allclose(layer.lookup(got).numpy().reshape(-1, 2),
                               summed, atol=1e-6)
    for training in (False, True):
        out = _rvq(books)(x, training=training).numpy()
        np.testing.assert_allclose(out.reshape(-1, 2), summed, atol=1e-6)
        # lookup(codes(x)) is exactly the forward pass.
        np.testing.assert_array_equal(out, layer.lookup(got).numpy())
    assert layer.num_codes == 6
    np.testing.assert_allclose(layer.log_num_codes, 3 * np.log(6))


def test_straight_through_gradient_and_stage_losses():
    beta = 0.5
    books = RNG.normal(size=(2, 4, 3)).astype("float32")
    x = RNG.normal(size=(10, 3)).astype("float32")
    w = RNG.normal(size=(10, 3)).astype("float32")
    layer = _rvq(books, commitment_cost=beta, restart_after_steps=None)
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        y = tf.reduce_sum(w * layer(xt, training=True))
        losses = list(layer.losses)
    np.testing.assert_allclose(tape.gradient(y, xt).numpy(), w, rtol=1e-6)
    codes, seen, _ = _np_residual_codes(x, books)
    assert len(losses) == 2
    for q in range(2):
        r, e = seen[q], books[q][codes[:, q]]
        np.testing.assert_allclose(float(losses[q]),
                                   beta * np.mean((r - e) ** 2), rtol=1e-5)
    # Stage q's commitment gradient reaches x through r_q only
    # (earlier codes are constants): d/dx = 2 beta (r_q - e_q) / size.
    for q in range(2):
        r, e = seen[q], books[q][codes[:, q]]
        np.testing.assert_allclose(
            tape.gradient(losses[q], xt).numpy(),
            2 * beta * (r - e) / x.size, rtol=1e-4, atol=1e-7)


def test_usage_metrics_average_the_stages():
    books = np.array([[[0.0], [10.0]], [[0.0], [1.0]]], "float32")
    layer = _rvq(books, ema_decay=None, restart_after_steps=None)
    # Stage 0 uses code 0 only; stage 1 uses both codes equally.
    layer(np.array([[0.0], [1.0]], "float32"), training=True)
    m = layer.usage_metrics()
    np.testing.assert_allclose(float(m["perplexity_0"]), 1.0)
    np.testing.assert_allclose(float(m["perplexity_1"]), 2.0, rtol=1e-6)
    np.testing.assert_allclose(float(m["perplexity"]), 1.5, rtol=1e-6)
    np.testing.assert_allclose(float(m["codebook_usage_0"]), 0.5)
    np.testing.assert_allclose(float(m["codebook_usage"]), 0.75)


def test_keras_round_trip_keeps_every_stage():
    x = RNG.normal(size=(64, 4)).astype("float32")
    inp = keras.Input((4,))
    rvq = ResidualVectorQuantizer(2, 8, seed=2, restart_after_steps=2)
    model = keras.Model(inp, keras.layers.Dense(4)(rvq(inp)))
    model.compile(optimizer="sgd", loss="mse", jit_compile=False)
    model.fit(x, x, batch_size=16, epochs=1, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rvq.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    rvq2 = loaded.layers[1]
    assert len(rvq.weights) == 14
    for a, b in zip(rvq.weights, rvq2.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_array_equal(rvq.codes(x).numpy(), rvq2.codes(x).numpy())


def test_bad_input():
    with pytest.raises(ValueError, match="`num_quantizers`.*Received"):
        ResidualVectorQuantizer(0, 4)
    with pytest.raises(ValueError, match="`num_codes`.*Received"):
        ResidualVectorQuantizer(2, 1)
    layer = _rvq(RNG.normal(size=(2, 4, 3)))
    with pytest.raises(ValueError, match=r"`codes`.*\(batch, \.\.\., 2\)"):
        layer.lookup(tf.constant([[0, 1, 2]]))
    with pytest.raises(ValueError, match=r"`codes`.*\[0, 4\)"):
        layer.lookup(tf.constant([[0, 4]]))
    with pytest.raises(ValueError, match="code dimension 3"):
        layer(np.zeros((2, 5), "float32"))


def test_quantize_with_losses_is_the_call_without_add_loss():
    books = RNG.normal(size=(2, 4, 3)).astype("float32")
    x = RNG.normal(size=(8, 3)).astype("float32")
    called, direct = (_rvq(books, ema_decay=None, seed=0) for _ in range(2))
    want = called(x, training=True)
    got, losses = direct.quantize_with_losses(x, training=True)
    np.testing.assert_array_equal(got, want)
    assert len(losses) == len(called.losses) == 4  # 2 stages x 2 losses
    for a, b in zip(losses, called.losses):
        np.testing.assert_array_equal(a, b)
    assert not direct.losses
    for a, b in zip(direct.weights, called.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
