"""Every read of Keras' private functional-graph state, in one place.

Keras 3 has no public API to walk a functional graph backwards: a
`KerasTensor` records the operation and call ("node") that produced it in
`_keras_history`, and a layer keeps its calls in `_inbound_nodes`. Keras'
own `Functional` reads them the same way. `models/graph.py` reads a VAE's
graph only through the functions here, and
`tests/models/test_keras_graph.py` pins their behaviour on the Keras
versions `setup.py` allows, so a change in Keras fails one small test
rather than every model.
"""

import keras


def producer(tensor):
    """`(operation, node)` that produced a symbolic tensor, or `(None, None)`
    for a model input or a tensor that no layer produced."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, None
    op = history.operation
    return op, op._inbound_nodes[history.node_index]


def calls(layer):
    """The nodes (one per call in a functional graph) of `layer`."""
    return list(layer._inbound_nodes)


def node_inputs(node):
    """The symbolic tensors a node was called on, flattened."""
    return list(node.input_tensors)


def node_outputs(node):
    """The symbolic tensors a node produced, flattened."""
    return list(node.output_tensors)


def submodel(inputs, outputs, name):
    """`keras.Model(inputs, outputs)` on intermediate tensors of a graph.

    Building a model from intermediate tensors makes Keras clone the graph
    nodes between its inputs and outputs, and (Keras 3.15) it re-points the
    `_keras_history` of tensors among its inputs at the clone; the original
    model then fails to serialise ("could not find node key ..._ib-1").
    Their history is put back.
    """
    histories = [getattr(t, "_keras_history", None) for t in inputs]
    model = keras.Model(inputs, outputs, name=name)
    for t, history in zip(inputs, histories):
        if history is not None:
            t._keras_history = history
    return model
