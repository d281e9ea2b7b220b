"""Reading a functional Keras model as a VAE: where are q(z|x), z, p(x|z)?

`VAEModel` is built the functional way from any graph whose latent
variables are `LatentSample` layers (`ReparameterizedSample`, `IAFSample`,
`GumbelSoftmaxSample`), each fed by the posterior parameters through a
`KLRegularizer`, or quantizers (`VectorQuantizer`,
`ResidualVectorQuantizer`, `FiniteScalarQuantizer`: a level on its own,
read through `models/quantized.py`; its posterior parameters are the
features z_e it quantises). This module finds those latents ("levels")
and cuts the graph, sharing the original layers and weights, into:

- per level, a *stage* model: the model inputs and earlier levels' z it
  reads -> `[posterior params..., prior params..., context...]`;
- per level with a prior computed by the model, a *prior* model: earlier
  z (and condition inputs) -> prior params, for ancestral sampling;
- the *decoder*: the z it reads plus any model inputs it also reads (a
  conditional VAE's label) -> likelihood parameters.

Levels are in topological order (a level's stage reads only earlier z), so
a two-level VAE with q(z2 | x) q(z1 | x, z2) and p(z2) p(z1 | z2) p(x | z1)
has levels [z2, z1].

The graph is walked through `models/_keras_graph.py`, the one module that
reads Keras' private graph state.
"""

import dataclasses
from typing import Any, Optional

from keras_vae.layers.kl_regularizer import KLRegularizer
from keras_vae.layers.latent_sample import LatentSample
from keras_vae.models import _keras_graph as kg
from keras_vae.models import quantized as quantized_lib


@dataclasses.dataclass(frozen=True, kw_only=True)
class Level:
    """One latent variable of a VAE graph (`VAEModel.levels`)."""

    name: str              # the sampling layer's name (metric `kl_<name>`)
    sampler: Any           # the LatentSample layer (a QuantizedLatent)
    kl: Any                # its KLRegularizer (a UniformCodePrior)
    num_params: int        # posterior params among the stage outputs
    num_prior_params: int  # then prior params (0: the KL layer's prior)
    stage: Any             # keras.Model, see the module doc
    input_index: tuple     # model inputs the stage reads
    z_deps: tuple          # earlier levels whose z the stage reads
    prior_model: Optional[Any]  # keras.Model (prior params) or None
    prior_input_index: tuple
    prior_z_deps: tuple
    z_shape: tuple         # shape of one z, no batch axis (None: unknown)
    quantizer: Optional[Any] = None  # the quantizer layer of a quantized
    #                                  level (models/quantized.py), else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class VAEGraph:
    """A functional model read as a VAE (`VAEModel.graph`)."""

    levels: tuple               # Level, topologically ordered
    encoder: Optional[Any]      # single level only: model inputs -> params
    decoder: Any                # keras.Model: [z of decoder_z] + inputs -> params
    decoder_z: tuple            # levels whose z the decoder reads
    decoder_input_index: tuple  # model inputs the decoder reads
    condition_index: tuple      # model inputs generation needs (decoder, priors)


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
        _, node = kg.producer(t)
        if node is not None:
            stack.extend(kg.node_inputs(node))
    return tuple(sorted(inputs)), tuple(sorted(levels))




def _quantized_level(model, quantizer, node):
    """The entry of `_find_levels` for a quantizer: its input z_e is the
    posterior parameter, its output the z (see `models/quantized.py`)."""
    inputs = kg.node_inputs(node)
    if len(inputs) != 1:
        raise ValueError(
            f"VAEModel '{model.name}': the quantizer '{quantizer.name}' is "
            f"called on {len(inputs)} tensors; it quantises one tensor of "
            "features (batch, ..., D)."
        )
    return (quantized_lib.QuantizedLatent(quantizer),
            quantized_lib.UniformCodePrior(quantizer), inputs, [], [],
            kg.node_outputs(node)[0])


def _find_levels(model):
    samplers = [l for l in model.layers if isinstance(l, LatentSample)
                or quantized_lib.is_quantizer(l)]
    if not samplers:
        raise ValueError(
            f"VAEModel '{model.name}' has no latent sampling layer "
            "(ReparameterizedSample, IAFSample, GumbelSoftmaxSample) or "
            "quantizer (VectorQuantizer, ResidualVectorQuantizer, "
            "FiniteScalarQuantizer). Build it as: features -> "
            "GaussianEncoderHead -> KLRegularizer -> ReparameterizedSample "
            "-> decoder, or features -> VectorQuantizer -> decoder. Layers "
            f"received: {[l.name for l in model.layers]}"
        )
    found, kl_nodes = [], {}
    for sampler in samplers:
        nodes = kg.calls(sampler)
        if len(nodes) != 1:
            raise ValueError(
                f"The sampling layer '{sampler.name}' is called "
                f"{len(nodes)} times; VAEModel needs each "
                "latent sampled once."
            )
        node = nodes[0]
        if not isinstance(sampler, LatentSample):
            found.append(_quantized_level(model, sampler, node))
            continue
        inputs = kg.node_inputs(node)
        params = inputs[: sampler.num_params]
        context = inputs[sampler.num_params:]
        op, kl_node = kg.producer(params[0])
        kl_outputs = (
            kg.node_outputs(kl_node) if isinstance(op, KLRegularizer) else []
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
        kl_inputs = kg.node_inputs(kl_node)
        found.append(
            (sampler, op, kl_inputs[: len(params)],
             kl_inputs[len(params):], context, kg.node_outputs(node)[0])
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
        stage = kg.submodel(
            [model_inputs[j] for j in input_index]
            + [z_tensors[d] for d in z_deps],
            outputs, f"{model.name}_{sampler.name}_stage",
        )
        prior_model, prior_input_index, prior_z_deps = None, (), ()
        if prior_params:
            prior_input_index, prior_z_deps = _reachable(
                prior_params, z_ids, model_inputs
            )
            prior_model = kg.submodel(
                [model_inputs[j] for j in prior_input_index]
                + [z_tensors[d] for d in prior_z_deps],
                prior_params, f"{model.name}_{sampler.name}_prior",
            )
        levels.append(Level(
            name=sampler.name, sampler=sampler, kl=kl,
            num_params=len(params), num_prior_params=len(prior_params),
            stage=stage, input_index=input_index, z_deps=z_deps,
            prior_model=prior_model, prior_input_index=prior_input_index,
            prior_z_deps=prior_z_deps, z_shape=tuple(z.shape[1:]),
            quantizer=(sampler.quantizer if isinstance(
                sampler, quantized_lib.QuantizedLatent) else None),
        ))

    decoder_input_index, decoder_z = _reachable(
        model.outputs, z_ids, model_inputs
    )
    if not decoder_z:
        raise ValueError(
            f"VAEModel '{model.name}': the output does not depend on any "
            "latent sample."
        )
    decoder = kg.submodel(
        [z_tensors[d] for d in decoder_z]
        + [model_inputs[j] for j in decoder_input_index],
        model.outputs[0], f"{model.name}_decoder",
    )
    condition_index = tuple(sorted(
        set(decoder_input_index).union(
            *[level.prior_input_index for level in levels]
        )
    ))
    encoder = None
    if len(levels) == 1:
        encoder = kg.submodel(
            model_inputs, found[0][2], f"{model.name}_encoder"
        )
    return VAEGraph(
        levels=tuple(levels), encoder=encoder, decoder=decoder,
        decoder_z=decoder_z, decoder_input_index=decoder_input_index,
        condition_index=condition_index,
    )
