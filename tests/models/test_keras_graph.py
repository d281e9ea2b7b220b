"""Pins the Keras graph internals `models/_keras_graph.py` relies on.

If a Keras release changes `_keras_history` or `_inbound_nodes`, these
fail first, naming the function to fix.
"""

import keras
import numpy as np

from keras_vae.models import _keras_graph as kg


def _graph():
    x = keras.Input((4,), name="x")
    dense = keras.layers.Dense(3, name="dense")
    h = dense(x)
    a, b = keras.layers.Lambda(lambda t: (t, 2 * t), name="pair")(h)
    out = keras.layers.Add(name="add")([a, b])
    return x, dense, h, (a, b), out


def test_producer_and_nodes():
    x, dense, h, (a, b), out = _graph()
    assert kg.producer(x)[0].name == "x"  # an Input is an InputLayer
    op, node = kg.producer(h)
    assert op is dense
    assert [id(t) for t in kg.node_inputs(node)] == [id(x)]
    assert [id(t) for t in kg.node_outputs(node)] == [id(h)]
    op, node = kg.producer(b)
    assert op.name == "pair"
    assert [id(t) for t in kg.node_outputs(node)] == [id(a), id(b)]
    op, node = kg.producer(out)
    assert [id(t) for t in kg.node_inputs(node)] == [id(a), id(b)]
    assert kg.producer(np.zeros(2)) == (None, None)


def test_calls_counts_each_call():
    x, dense, h, _, _ = _graph()
    assert len(kg.calls(dense)) == 1
    dense(keras.Input((4,)))
    assert len(kg.calls(dense)) == 2


def test_submodel_keeps_the_original_model_serialisable(tmp_path):
    x, dense, h, _, out = _graph()
    model = keras.Model(x, out)
    history = h._keras_history
    sub = kg.submodel([h], out, "tail")
    assert h._keras_history is history
    np.testing.assert_allclose(
        sub(np.ones((2, 3), "float32")), 3 * np.ones((2, 3)), rtol=1e-6)
    model.save(tmp_path / "m.keras")  # fails if the history was not restored
