"""Reading a functional Keras model as a VAE: where is q(z|x), z, p(x|z)?

`VAEModel` is built the functional way from any graph that contains one
`ReparameterizedSample` fed (directly or through a `KLRegularizer`) by the
posterior parameters. This module finds those pieces and splits the graph
into an encoder (model inputs -> `(loc, scale)`) and a decoder (`z` plus any
model inputs the decoder also reads, such as a label -> likelihood
parameters), sharing the original layers and weights.

It walks the graph through each KerasTensor's `_keras_history` (the
operation that produced it and its inbound node); Keras 3 has no public
graph-walking API, and this attribute is the one Keras itself documents for
functional graphs.
"""

import collections

import keras

from keras_vae.layers.kl_regularizer import KLRegularizer
from keras_vae.layers.reparameterized_sample import ReparameterizedSample

VAEGraph = collections.namedtuple(
    "VAEGraph",
    [
        "sampler",          # the ReparameterizedSample layer
        "kl",               # the KLRegularizer layer
        "encoder",          # keras.Model: model inputs -> [loc, scale]
        "decoder",          # keras.Model: [z] + condition inputs -> params
        "condition_index",  # positions in model.inputs the decoder also reads
    ],
)


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, None
    op = history.operation
    return op, op._inbound_nodes[history.node_index]


def _reachable_inputs(outputs, stop, model_inputs):
    """Model inputs reachable backwards from `outputs` without crossing `stop`."""
    input_ids = {id(t): i for i, t in enumerate(model_inputs)}
    found, seen = set(), set()
    stack = list(outputs)
    while stack:
        t = stack.pop()
        if id(t) in seen or t is stop:
            continue
        seen.add(id(t))
        if id(t) in input_ids:
            found.add(input_ids[id(t)])
            continue
        _, node = _producer(t)
        if node is not None:
            stack.extend(node.input_tensors)
    return sorted(found)


def _one(layers, cls, model_name):
    if len(layers) > 1:
        names = [layer.name for layer in layers]
        raise ValueError(
            f"VAEModel '{model_name}' found {len(layers)} {cls.__name__} "
            f"layers ({names}) and cannot tell which one is the latent "
            "variable. A VAEModel has exactly one."
        )
    return layers[0] if layers else None


def analyse(model):
    """Finds sampler, KL layer, encoder and decoder of a functional model."""
    layers = model.layers
    sampler = _one(
        [l for l in layers if isinstance(l, ReparameterizedSample)],
        ReparameterizedSample, model.name,
    )
    if sampler is None:
        raise ValueError(
            f"VAEModel '{model.name}' has no ReparameterizedSample layer. "
            "Build it as: features -> GaussianEncoderHead -> KLRegularizer "
            "-> ReparameterizedSample -> decoder. Layers received: "
            f"{[l.name for l in layers]}"
        )
    if len(sampler._inbound_nodes) != 1:
        raise ValueError(
            f"The ReparameterizedSample layer '{sampler.name}' is called "
            f"{len(sampler._inbound_nodes)} times; VAEModel needs it called "
            "once."
        )
    posterior = list(sampler.input)
    z = sampler.output

    kl = None
    op, node = _producer(posterior[0])
    if isinstance(op, KLRegularizer):
        kl = op
        posterior = list(node.input_tensors)
    if kl is None:
        raise ValueError(
            f"VAEModel '{model.name}': the input of ReparameterizedSample "
            f"'{sampler.name}' does not come from a KLRegularizer. Put one "
            "between the GaussianEncoderHead and the sample: "
            "q = KLRegularizer()(GaussianEncoderHead(L)(h)); "
            "z = ReparameterizedSample()(q)."
        )
    model_inputs = list(model.inputs)
    encoder = keras.Model(
        model_inputs, posterior, name=f"{model.name}_encoder"
    )
    if len(model.outputs) != 1:
        raise ValueError(
            f"VAEModel '{model.name}' has {len(model.outputs)} outputs; it "
            "needs exactly one (the likelihood parameters of the data)."
        )
    condition_index = _reachable_inputs(model.outputs, z, model_inputs)
    conditions = [model_inputs[i] for i in condition_index]
    # Building a model from the intermediate `z` makes Keras clone the graph
    # nodes between its inputs and outputs, and (Keras 3.15) it re-points
    # the `_keras_history` of real `keras.Input` tensors among them at the
    # clone; the original model then fails to serialise ("could not find
    # node key ..._ib-1"). Put their history back.
    histories = [t._keras_history for t in conditions]
    decoder = keras.Model(
        [z] + conditions, model.outputs[0], name=f"{model.name}_decoder"
    )
    for t, history in zip(conditions, histories):
        t._keras_history = history
    return VAEGraph(sampler, kl, encoder, decoder, condition_index)
