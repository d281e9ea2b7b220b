"""The one test helper every public layer and loss goes through.

`run_layer_test` and `run_loss_test` check, for one configuration:
1. config round-trip: `from_config(get_config())` gives the same config and
   every constructor argument is in the config with the value given;
2. an eager call, and a symbolic call whose shapes agree with it;
3. a `.keras` save / `load_model(safe_mode=True)` with identical outputs;
4. one `fit` step with `jit_compile=True` that changes the weights and stays
   finite;
5. the same fit step under the `mixed_float16` policy, finite.
"""

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf


def _as_list(x):
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _check_config(obj, cls, init_kwargs):
    config = obj.get_config()
    for key, value in init_kwargs.items():
        assert key in config, f"{cls.__name__}.get_config() forgot `{key}`"
        got = config[key]
        if isinstance(value, (keras.layers.Layer, keras.losses.Loss)):
            continue  # nested objects are compared by their own config
        if hasattr(value, "get_config"):
            continue
        assert got == value or (
            isinstance(got, (list, tuple)) and list(got) == list(value)
        ), f"{cls.__name__}.get_config()['{key}'] = {got!r}, given {value!r}"
    revived = cls.from_config(config)
    assert revived.get_config() == config, (
        f"{cls.__name__}: config changed on round-trip"
    )
    # Through the registered name, as `load_model` does.
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(obj)
    )
    assert type(revived) is cls
    return revived


def _wrap_model(layer, input_data):
    """Model: inputs -> layer -> Dense(1) per output (so it can be fit)."""
    inputs = [
        keras.Input(np.shape(a)[1:], dtype=str(np.asarray(a).dtype))
        for a in _as_list(input_data)
    ]
    layer_in = inputs if isinstance(input_data, (list, tuple)) else inputs[0]
    if isinstance(input_data, tuple):
        layer_in = tuple(inputs)
    outputs = _as_list(layer(layer_in))
    heads = [
        keras.layers.Dense(1, name=f"probe_{i}")(
            keras.layers.Flatten()(o)
        )
        for i, o in enumerate(outputs)
    ]
    return keras.Model(inputs, heads)


def _fit_one_step(model, input_data, loss="mse", require_update=True):
    xs = [np.asarray(a) for a in _as_list(input_data)]
    n = xs[0].shape[0]
    ys = [np.zeros((n, 1), "float32") for _ in model.outputs]
    model.compile(
        optimizer=keras.optimizers.SGD(0.01), loss=loss, jit_compile=True
    )
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(xs, ys, batch_size=n, epochs=1, verbose=0)
    value = history.history["loss"][-1]
    assert np.isfinite(value), f"fit loss is not finite: {value}"
    if not require_update:
        # Under mixed_float16 the loss-scale optimizer may skip the first
        # step (its initial scale of 2**15 overflows float16 gradients).
        return value
    after = [w.numpy() for w in model.trainable_weights]
    assert any(
        not np.array_equal(a, b) for a, b in zip(before, after)
    ), "one fit step did not change any weight"
    return value


def _count_state(layer, out):
    """What a called layer created: weights, seed generators, losses."""
    return {
        "trainable weights": len(layer.trainable_weights),
        "non-trainable weights": len(layer.non_trainable_weights),
        # A SeedGenerator's state is a variable but not a weight.
        "seed generators": len(layer.variables) - len(layer.weights),
        "losses": len(layer.losses),
    }


def run_layer_test(
    cls,
    init_kwargs,
    input_data,
    expected_output_shape=None,
    training_arg=None,
    *,
    expected_num_trainable_weights,
    expected_num_non_trainable_weights,
    expected_num_seed_generators,
    expected_num_losses,
):
    """Runs the shared checks for one layer configuration.

    Args:
        cls: the layer class.
        init_kwargs: constructor arguments.
        input_data: a NumPy array, or a tuple/list of arrays for a layer that
            takes several tensors (e.g. `(loc, scale)`).
        expected_output_shape: shape (or tuple of shapes) of the eager
            output, batch included.
        training_arg: passed as `training=` to the eager call when not None.
        expected_num_*: what one eager call of a fresh layer leaves behind
            (as Keras' own layer test asserts): trainable and non-trainable
            weights, seed generators (their state is saved with the
            weights) and losses added with `add_loss` — the cheapest guard
            against a layer that silently adds a loss or forgets its seed.
    """
    layer = cls(**init_kwargs)
    _check_config(layer, cls, init_kwargs)

    # Eager and symbolic calls agree on shapes.
    call_in = input_data
    if isinstance(input_data, list):
        call_in = [tf.constant(a) for a in input_data]
    elif isinstance(input_data, tuple):
        call_in = tuple(tf.constant(a) for a in input_data)
    else:
        call_in = tf.constant(input_data)
    kwargs = {} if training_arg is None else {"training": training_arg}
    out = layer(call_in, **kwargs)
    counts = _count_state(layer, out)
    expected_counts = {
        "trainable weights": expected_num_trainable_weights,
        "non-trainable weights": expected_num_non_trainable_weights,
        "seed generators": expected_num_seed_generators,
        "losses": expected_num_losses,
    }
    assert counts == expected_counts, (
        f"{cls.__name__} created {counts}, expected {expected_counts}"
    )
    out_shapes = [tuple(o.shape) for o in _as_list(out)]
    for o in _as_list(out):
        assert np.all(np.isfinite(np.asarray(o, dtype="float64")))
    if expected_output_shape is not None:
        expected = expected_output_shape
        if not isinstance(expected[0], (tuple, list)):
            expected = [expected]
        assert out_shapes == [tuple(s) for s in expected], (
            f"{cls.__name__} output shapes {out_shapes} != {expected}"
        )
    model = _wrap_model(cls(**init_kwargs), input_data)
    sym_shapes = [
        tuple(t.shape[1:])
        for t in _as_list(model.layers[len(_as_list(input_data))].output)
    ]
    assert sym_shapes == [s[1:] for s in out_shapes], (
        f"symbolic shapes {sym_shapes} != eager shapes {out_shapes}"
    )

    # .keras round trip with identical outputs.
    xs = [np.asarray(a) for a in _as_list(input_data)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer_model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    a = _as_list(model.predict(xs, verbose=0))
    b = _as_list(loaded.predict(xs, verbose=0))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)

    # One XLA fit step.
    _fit_one_step(model, input_data)

    # Mixed precision.
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        _fit_one_step(
            _wrap_model(cls(**init_kwargs), input_data), input_data,
            require_update=False,
        )
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return layer


def run_loss_test(cls, init_kwargs, y_true, y_pred, expected=None, rtol=1e-5):
    """Runs the shared checks for one likelihood-loss configuration.

    Args:
        cls: the loss class.
        init_kwargs: constructor arguments.
        y_true: data batch (NumPy).
        y_pred: decoder parameters for that batch (NumPy, float32).
        expected: the batch-mean negative log-likelihood computed by hand
            (e.g. from a TFP distribution built in the test); checked when
            given.
    """
    loss = cls(**init_kwargs)
    _check_config(loss, cls, init_kwargs)
    value = float(loss(y_true, y_pred))
    assert np.isfinite(value), f"{cls.__name__} value {value}"
    if expected is not None:
        np.testing.assert_allclose(value, expected, rtol=rtol, atol=1e-5)
    per_example = loss.log_prob(y_true, y_pred)
    assert tuple(per_example.shape) == (np.shape(y_true)[0],)
    np.testing.assert_allclose(
        -np.mean(per_example), value, rtol=1e-5, atol=1e-5
    )

    # A model trained with it: features -> Dense -> params.
    n = np.shape(y_true)[0]
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n, 4)).astype("float32")
    width = int(np.prod(np.shape(y_pred)[1:]))

    def build():
        inp = keras.Input((4,))
        h = keras.layers.Dense(width, kernel_initializer="zeros")(inp)
        out = keras.layers.Reshape(np.shape(y_pred)[1:])(h)
        model = keras.Model(inp, out)
        model.compile(
            optimizer=keras.optimizers.SGD(1e-3), loss=cls(**init_kwargs),
            jit_compile=True,
        )
        return model

    model = build()
    before = [w.numpy().copy() for w in model.trainable_weights]
    hist = model.fit(feats, y_true, batch_size=n, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][-1])
    assert any(
        not np.array_equal(a, w.numpy())
        for a, w in zip(before, model.trainable_weights)
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "loss_model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.loss) is cls
    assert loaded.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(
        loaded.evaluate(feats, y_true, verbose=0),
        model.evaluate(feats, y_true, verbose=0),
        rtol=1e-6,
    )

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build()
        hist = model.fit(feats, y_true, batch_size=n, epochs=1, verbose=0)
        assert np.isfinite(hist.history["loss"][-1])
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return loss
