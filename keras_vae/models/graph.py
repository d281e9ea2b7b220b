"""Reading a functional Keras model as a VAE: where are q(z|x), z, p(x|z)?

`VAEModel` is built the functional way from any graph whose latent
variables are `LatentSample` layers (`ReparameterizedSample`, `IAFSample`,
`GumbelSoftmaxSample`), each fed by the posterior parameters through a
`KLRegularizer`. This module finds those latents ("levels") and cuts the
graph, sharing the original layers and weights, into:

- per level, a *stage* model: the model inputs and earlier levels' z it
  reads -> `[posterior params..., prior params..., context...]`;
- per level with a prior computed by the model, a *prior* model: earlier
  z (and condition inputs) -> prior params, for ancestral sampling;
- the *decoder*: the z it reads plus any model inputs it also reads (a
  conditional VAE's label) -> likelihood parameters.

Levels are in topological order (a level's stage reads only earlier z), so
a two-level VAE with q(z2 | x) q(z1 | x, z2) and p(z2) p(z1 | z2) p(x | z1)
has levels [z2, z1].

It walks the graph through each KerasTensor's `_keras_history` (the
operation that produced it and its inbound node); Keras 3 has no public
graph-walking API, and this attribute is the one Keras itself documents for
functional graphs.
"""

import collections

import keras

from keras_vae.layers.kl_regularizer import KLRegularizer
from keras_vae.layers.latent_sample import LatentSample

Level = collections.namedtuple(
    "Level",
    [
        "name",           # the sampling layer's name (metric `kl_<name>`)
        "sampler",        # the LatentSample layer
        "kl",             # its KLRegularizer
        "num_params",     # posterior params among the stage outputs
        "num_prior_params",  # then prior params (0: the KL layer's prior)
        "stage",          # keras.Model, see the module doc
        "input_index",    # model inputs the stage reads
        "z_deps",         # earlier levels whose z the stage reads
        "prior_model",    # keras.Model or None
        "prior_input_index",
        "prior_z_deps",
        "z_shape",        # shape of one z, without the batch axis
    ],
)

VAEGraph = collections.namedtuple(
    "VAEGraph",
    [
        "levels",           # list of Level, topologically ordered
        "encoder",          # single level only: model inputs -> params
        "decoder",          # keras.Model: [z of decoder_z] + inputs -> params
        "decoder_z",        # levels whose z the decoder reads
        "decoder_input_index",  # model inputs the decoder reads
        "condition_index",  # model inputs generation needs (decoder, priors)
    ],
)


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, None
    op = history.operation
    return op, op._inbound_nodes[history.node_index]


def _reachable(outputs, z_ids, model_inputs):
    """Model inputs and levels reachable backwards from `outputs`.

    The walk stops at the z tensors (`z_ids`: id -> level index). Returns
    `(sorted input indices, sorted level indices)`.
    """
    input_ids = {id(t): i for i, t in enumerate(model_inputs)}
    inputs, levels, seen = set(), set(), set()
    stack = list(outputs)
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if id(t) in z_ids:
            levels.add(z_ids[id(t)])
            continue
        if id(t) in input_ids:
            inputs.add(input_ids[id(t)])
            continue
        _, node = _producer(t)
        if node is not None:
            stack.extend(node.input_tensors)
    return sorted(inputs), sorted(levels)


def _submodel(inputs, outputs, name):
    """`keras.Model(inputs, outputs)` on intermediate tensors of a graph.

    Building a model from intermediate tensors makes Keras clone the graph
    nodes between its inputs and outputs, and (Keras 3.15) it re-points the
    `_keras_history` of tensors among its inputs at the clone; the original
    model then fails to serialise ("could not find node key ..._ib-1").
    Put their history back.
    """
    histories = [getattr(t, "_keras_history", None) for t in inputs]
    model = keras.Model(inputs, outputs, name=name)
    for t, history in zip(inputs, histories):
        if history is not None:
            t._keras_history = history
    return model


def _find_levels(model):
    samplers = [l for l in model.layers if isinstance(l, LatentSample)]
    if not samplers:
        raise ValueError(
            f"VAEModel '{model.name}' has no latent sampling layer "
            "(ReparameterizedSample, IAFSample, GumbelSoftmaxSample). Build "
            "it as: features -> GaussianEncoderHead -> KLRegularizer -> "
            "ReparameterizedSample -> decoder. Layers received: "
            f"{[l.name for l in model.layers]}"
        )
    found, kl_nodes = [], {}
    for sampler in samplers:
        if len(sampler._inbound_nodes) != 1:
            raise ValueError(
                f"The sampling layer '{sampler.name}' is called "
                f"{len(sampler._inbound_nodes)} times; VAEModel needs each "
                "latent sampled once."
            )
        node = sampler._inbound_nodes[0]
        inputs = list(node.input_tensors)
        params = inputs[: sampler.num_params]
        context = inputs[sampler.num_params:]
        op, kl_node = _producer(params[0])
        kl_outputs = (
            list(kl_node.output_tensors) if isinstance(op, KLRegularizer)
            else []
        )
        if [id(t) for t in kl_outputs] != [id(t) for t in params]:
            raise ValueError(
                f"VAEModel '{model.name}': the posterior parameters entering "
                f"'{sampler.name}' do not come straight from a "
                "KLRegularizer. Put one between the head and the sample: "
                "q = KLRegularizer()(GaussianEncoderHead(L)(h)); "
                "z = ReparameterizedSample()(q)."
            )
        kl_nodes.setdefault(id(kl_node), []).append(sampler.name)
        if len(kl_nodes[id(kl_node)]) > 1:
            raise ValueError(
                f"VAEModel '{model.name}': KLRegularizer '{op.name}' feeds "
                f"{len(kl_nodes[id(kl_node)])} sampling layers "
                f"({kl_nodes[id(kl_node)]}); each latent needs its own KL."
            )
        kl_inputs = list(kl_node.input_tensors)
        found.append(
            (sampler, op, kl_inputs[: len(params)],
             kl_inputs[len(params):], context, node.output_tensors[0])
        )
    return found


def call_as_list(model, inputs, training=None):
    """Calls a stage/prior model; its outputs as a list (one tensor too)."""
    out = model(inputs, training=training)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _topological(deps):
    """Order of indices such that every index comes after its deps."""
    order, done = [], set()
    pending = list(range(len(deps)))
    while pending:
        ready = [i for i in pending if set(deps[i]) <= done]
        if not ready:  # impossible in a functional graph (it is a DAG)
            raise ValueError("The latent levels depend on each other in a cycle.")
        for i in ready:
            order.append(i)
            done.add(i)
            pending.remove(i)
    return order


def analyse(model):
    """Finds the latent levels, their stages and the decoder of a model."""
    if len(model.outputs) != 1:
        raise ValueError(
            f"VAEModel '{model.name}' has {len(model.outputs)} outputs; it "
            "needs exactly one (the likelihood parameters of the data)."
        )
    model_inputs = list(model.inputs)
    found = _find_levels(model)
    z_ids = {id(f[5]): i for i, f in enumerate(found)}
    deps = []
    for _, _, params, prior_params, context, _ in found:
        _, z_deps = _reachable(params + prior_params + context, z_ids,
                               model_inputs)
        deps.append(z_deps)
    order = _topological(deps)
    rank = {old: new for new, old in enumerate(order)}
    z_ids = {k: rank[i] for k, i in z_ids.items()}
    found = [found[i] for i in order]
    z_tensors = [f[5] for f in found]

    levels = []
    for i, (sampler, kl, params, prior_params, context, z) in enumerate(found):
        outputs = params + prior_params + context
        input_index, z_deps = _reachable(outputs, z_ids, model_inputs)
        stage = _submodel(
            [model_inputs[j] for j in input_index]
            + [z_tensors[d] for d in z_deps],
            outputs, f"{model.name}_{sampler.name}_stage",
        )
        prior_model, prior_input_index, prior_z_deps = None, [], []
        if prior_params:
            prior_input_index, prior_z_deps = _reachable(
                prior_params, z_ids, model_inputs
            )
            prior_model = _submodel(
                [model_inputs[j] for j in prior_input_index]
                + [z_tensors[d] for d in prior_z_deps],
                prior_params, f"{model.name}_{sampler.name}_prior",
            )
        levels.append(
            Level(sampler.name, sampler, kl, len(params), len(prior_params),
                  stage, input_index, z_deps, prior_model, prior_input_index,
                  prior_z_deps, tuple(z.shape[1:]))
        )

    decoder_input_index, decoder_z = _reachable(
        model.outputs, z_ids, model_inputs
    )
    if not decoder_z:
        raise ValueError(
            f"VAEModel '{model.name}': the output does not depend on any "
            "latent sample."
        )
    decoder = _submodel(
        [z_tensors[d] for d in decoder_z]
        + [model_inputs[j] for j in decoder_input_index],
        model.outputs[0], f"{model.name}_decoder",
    )
    condition_index = sorted(
        set(decoder_input_index).union(
            *[level.prior_input_index for level in levels]
        )
    )
    encoder = None
    if len(levels) == 1:
        encoder = _submodel(
            model_inputs, found[0][2], f"{model.name}_encoder"
        )
    return VAEGraph(levels, encoder, decoder, decoder_z, decoder_input_index,
                    condition_index)
