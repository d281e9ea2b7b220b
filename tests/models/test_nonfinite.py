import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae.models import _nonfinite
from keras_vae.losses import BernoulliNLL
from tests.builders import binary_data, mlp_vae


def _compiled():
    vae = mlp_vae()
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL())
    return vae


def test_nan_target_names_reconstruction_and_keeps_weights_finite():
    x = binary_data(256)
    target = x.copy()
    target[70, 3] = np.nan  # second batch of 64
    vae = _compiled()
    # Through tf.data: NumPy data holding NaN is refused before fit starts
    # (tests/models/test_missing_data.py); a pipeline's NaN reaches the step.
    data = tf.data.Dataset.from_tensor_slices((x, target)).batch(64)
    with pytest.raises(FloatingPointError,
                       match=r"reconstruction term in 1 step.*skipped") as err:
        vae.fit(data, epochs=3, verbose=0)
    assert "missing_values=float('nan')" in str(err.value)
    assert "kl term" not in str(err.value)
    assert "epoch 1" in str(err.value)
    assert all(np.isfinite(w).all() for w in vae.get_weights())
    # 4 steps ran, the NaN one did not update the optimizer either.
    assert int(vae.optimizer.iterations) == 3


def test_clean_data_is_not_flagged():
    vae = _compiled()
    hist = vae.fit(binary_data(128), batch_size=64, epochs=2, verbose=0)
    assert len(hist.history["loss"]) == 2


def test_terminate_on_nan_stops_at_the_batch():
    x = binary_data(256)
    bad = x.copy()
    bad[0, 0] = np.inf
    vae = _compiled()
    with pytest.raises(FloatingPointError, match="kl term"):
        vae.fit(bad, batch_size=64, epochs=3, shuffle=False, verbose=0,
                callbacks=[keras.callbacks.TerminateOnNaN()])
    assert int(vae.optimizer.iterations) == 0
    assert all(np.isfinite(w).all() for w in vae.get_weights())


def assert_same_bits(after, before):
    """Each array of `after` equals `before`'s bit for bit: not even -0.0
    for 0.0 or a rounding."""
    assert len(after) == len(before)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(np.atleast_1d(a).view(np.uint8),
                                      np.atleast_1d(b).view(np.uint8))


class PlainSGD(keras.optimizers.SGD):
    """A subclass: its writes are not known to go through `assign`, so the
    step is kept by copying and selecting back (the fallback path)."""


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.Adam(1e-2),  # masked writes
    lambda: keras.optimizers.SGD(1e-2, momentum=0.9),  # masked writes
    lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1),  # copy + select
    lambda: PlainSGD(1e-2, momentum=0.9),  # copy + select
], ids=["Adam", "SGD-momentum", "AdamW", "SGD-subclass"])
def test_a_non_finite_step_changes_no_weight_and_no_optimizer_state(
        optimizer):
    x = binary_data(128)
    bad = x[:64].copy()
    bad[5, 1] = np.nan
    vae = mlp_vae()
    vae.compile(optimizer=optimizer(), loss=BernoulliNLL())
    vae.fit(x, batch_size=64, epochs=1, verbose=0)
    weights = [w.numpy() for w in vae.weights]
    slots = [v.numpy() for v in vae.optimizer.variables]
    assert int(vae.optimizer.iterations) == 2
    data = tf.data.Dataset.from_tensor_slices((x[:64], bad)).batch(64)
    with pytest.raises(FloatingPointError, match="reconstruction term"):
        vae.fit(data, epochs=1, verbose=0)
    assert_same_bits([w.numpy() for w in vae.weights]
                     + [v.numpy() for v in vae.optimizer.variables],
                     weights + slots)
    # And the next finite step trains again.
    vae.fit(x, batch_size=64, epochs=1, verbose=0)
    assert int(vae.optimizer.iterations) == 4
    assert not np.array_equal(vae.weights[0].numpy(), weights[0])


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.SGD(1e-2),
    lambda: keras.optimizers.Adam(1e-2),
], ids=["SGD", "Adam"])
def test_sparse_embedding_gradients_are_masked_too(optimizer):
    """An Embedding's gradient is a tf.IndexedSlices: the masked writes keep
    it sparse (scatter updates) and still change nothing on a NaN step."""
    x = binary_data(128)
    label = (np.arange(128) % 4).astype("int32")[:, None]
    x_in, y_in = keras.Input((32,), name="x"), keras.Input((1,), name="label")
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(
        keras.layers.Dense(16, activation="relu")(x_in)))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    embedding = keras.layers.Embedding(4, 3)
    h = keras.layers.Concatenate()(
        [z, keras.layers.Flatten()(embedding(y_in))])
    vae = keras_vae.VAEModel([x_in, y_in], keras.layers.Dense(32)(h))
    vae.compile(optimizer=optimizer(), loss=BernoulliNLL())
    with tf.GradientTape() as tape:
        loss, _ = vae.compute_objective(((x[:8], label[:8]), x[:8]))
    assert isinstance(tape.gradient(loss, embedding.embeddings),
                      tf.IndexedSlices)

    def batches(target):
        return tf.data.Dataset.from_tensor_slices(
            ((x[:64], label[:64]), target)).batch(64)

    vae.fit(batches(x[:64]), epochs=1, verbose=0)
    before = [v.numpy() for v in vae.weights + vae.optimizer.variables]
    bad = x[:64].copy()
    bad[0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="reconstruction term"):
        vae.fit(batches(bad), epochs=1, verbose=0)
    assert_same_bits(
        [v.numpy() for v in vae.weights + vae.optimizer.variables], before)
    vae.fit(batches(x[:64]), epochs=1, verbose=0)
    assert not np.array_equal(embedding.embeddings.numpy(), before[
        [id(w) for w in vae.weights].index(id(embedding.embeddings))])


@pytest.mark.parametrize("name", [c.__name__ for c in _nonfinite._MASKABLE])
def test_every_masked_optimizer_skips_exactly_and_steps_as_keras(name):
    """For each optimizer whose writes are masked, under XLA: a step with a
    non-finite loss leaves the variable and every slot bit-identical, and a
    finite step is the same optimizer's own update (to float rounding: the
    select can change how XLA fuses Adafactor's update, 1 ulp)."""
    cls = getattr(keras.optimizers, name)
    start = np.linspace(-1.0, 1.0, 6, dtype="float32").reshape(2, 3)
    grad = np.cos(np.arange(6, dtype="float32")).reshape(2, 3)
    masked_var, plain_var = keras.Variable(start), keras.Variable(start)
    masked, plain = cls(learning_rate=0.1), cls(learning_rate=0.1)
    masked.build([masked_var])
    plain.build([plain_var])
    assert _nonfinite._maskable(masked, [masked_var])

    @tf.function(jit_compile=True)
    def masked_step(g, loss):
        _nonfinite.apply_unless_not_finite(
            [(masked, [g], [masked_var])], tf.math.is_finite(loss))

    @tf.function(jit_compile=True)
    def plain_step(g):
        plain.apply_gradients([(g, plain_var)])

    def state(opt, var):
        return [np.atleast_1d(v.numpy()) for v in [var] + list(opt.variables)]

    for step in range(3):
        masked_step(grad * (step + 1), tf.constant(1.0))
        plain_step(grad * (step + 1))
        for a, b in zip(state(masked, masked_var), state(plain, plain_var)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    before = state(masked, masked_var)
    assert not np.array_equal(before[0], start)
    masked_step(np.full_like(grad, np.nan), tf.constant(np.nan))
    assert_same_bits(state(masked, masked_var), before)
