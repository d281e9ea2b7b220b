"""SavedModel export of a VAEModel for TF Serving.

Signatures (each with named inputs and outputs and a dynamic batch axis):

| signature | inputs | outputs |
| --- | --- | --- |
| `serving_default` | model inputs (`x`, or `x`, `condition_1`, ...) | `reconstruction` (likelihood mean at the posterior mean) |
| `encode` | model inputs | `loc`, `scale` (`logits` for a categorical latent; with several latents `loc_<level>`, `scale_<level>`, ...) |
| `decode` | `z` (`z_<level>` for each latent the decoder reads, when several) (+ conditions) | `params` (likelihood parameters), `mean` |
| `sample` | `num_samples` (int32 scalar), `seed` (int32 scalar) (+ conditions, one row each) (+ `latent_shape` (int32 vector) when a latent's size is known only at run time) | `samples` (ancestral through the levels) |
| `log_likelihood` | model inputs (+ `targets` for a conditional model, shaped like the first input unless `target_shape` says otherwise) | `log_likelihood` (per example, importance-sampled with a fixed K, in chunks of 16 samples; deterministic: fixed seeds, so the same request gets the same scores; a row batched with other rows gets other draws, within the Monte Carlo error) |
| `encode_codes` (models with vector-quantised latents) | model inputs | `codes` (int32; `codes_<level>` for each quantized latent, when several) |
| `decode_codes` (the same, when the decoder reads only quantized latents) | `codes` (`codes_<level>` when several) (+ conditions) | `params`, `mean`, as `decode` |
| `impute` (models compiled with `missing_values`) | model inputs (+ `targets`, as above), `seed` (int32 scalar) | `imputed`: the data with each missing entry replaced by E[x_mis \| x_obs] (self-normalised importance sampling, K = `log_likelihood_samples`); the same numbers as `VAEModel.impute(x, num_samples=K, seed=seed, batch_size=len(x))` |

A quantized latent's `encode` output is its `features` (the encoder
output z_e). A model with a quantized latent has no `sample` signature:
its prior is uniform over the codes, and a uniform draw of codes is not
a useful sample. `decode_codes` checks that the codes are in range (an
assertion: out-of-range codes fail the request with InvalidArgumentError;
the signatures are not XLA-compiled, which would drop it).

Every signature is a thin caller of the inference programs
(`keras_vae.models.programs`) that the array methods of the same names run:
`serving_default` is `programs.reconstruct`, `log_likelihood` is
`programs.log_likelihood` (fixed seeds), `impute` is `programs.impute`.

The SavedModel needs only TensorFlow to load (`tf.saved_model.load`), not
keras_vae. It is written to a temporary directory next to `path` and moved
into place with one rename, so a crash mid-export never leaves a partial
model where a server would load it.
"""

import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.models import programs
from keras_vae.models import quantized as quantized_lib
from keras_vae.random import derive_seed

# Seed of the `log_likelihood` signature's noise (chunks derive theirs).
LOG_LIKELIHOOD_SEED = 20131220


def _spec(tensor, name):
    return tf.TensorSpec(
        (None,) + tuple(tensor.shape[1:]), tensor.dtype, name=name
    )


def _input_names(model):
    if len(model.inputs) == 1:
        return ["x"]
    return ["x"] + [f"input_{i}" for i in range(1, len(model.inputs))]


def _add_code_endpoints(archive, model, quantized, in_specs):
    """The `encode_codes` and (when the decoder reads only quantized
    latents) `decode_codes` signatures."""
    graph = model.graph
    levels = graph.levels

    def key(i, several):
        return "codes" if not several else f"codes_{levels[i].name}"

    def encode_codes(*args):
        codes = programs.encode_codes(model, list(args))
        return {key(i, len(quantized) > 1): c
                for i, c in zip(quantized, codes)}

    archive.add_endpoint("encode_codes", encode_codes, in_specs)
    if not all(levels[d].quantizer is not None for d in graph.decoder_z):
        return
    several = len(graph.decoder_z) > 1
    code_specs = [
        tf.TensorSpec(
            (None,) + quantized_lib.code_shape(levels[d].quantizer,
                                               levels[d].z_shape),
            tf.int32, name=key(d, several))
        for d in graph.decoder_z
    ]

    def decode_codes(*args):
        params = programs.decode_codes(model, list(args))
        return {"params": tf.cast(params, tf.float32),
                "mean": model.likelihood.mean(params)}

    archive.add_endpoint(
        "decode_codes", decode_codes,
        code_specs + [in_specs[j] for j in graph.decoder_input_index])


def export_serving(model, path, log_likelihood_samples=100,
                   target_shape=None):
    """Writes `model` (a compiled `VAEModel`) as a SavedModel at `path`.

    Args:
        model: a compiled `keras_vae.VAEModel`.
        path: target directory. If it exists it is replaced atomically
            (the old one is removed only after the new one is complete).
        log_likelihood_samples: K of the `log_likelihood` signature.
        target_shape: shape of one target (no batch axis) for the
            `targets` input of the `log_likelihood` signature of a model
            with several inputs. Default: the shape of the first model
            input (the data of a conditional VAE built as `[x, label]`).

    Returns:
        `path`.
    """
    k_ll = v.check_positive_int("log_likelihood_samples", log_likelihood_samples)
    likelihood = model.likelihood
    graph = model.graph
    levels = graph.levels
    names = _input_names(model)
    in_specs = [_spec(t, n) for t, n in zip(model.inputs, names)]
    dec_idx = graph.decoder_input_index
    cond_idx = graph.condition_index
    z_specs = [
        tf.TensorSpec(
            (None,) + levels[d].z_shape, tf.float32,
            name="z" if len(graph.decoder_z) == 1 else f"z_{levels[d].name}",
        )
        for d in graph.decoder_z
    ]
    # Latents drawn from a prior whose size is known only at run time
    # (a fully convolutional model): the `sample` signature takes it.
    unknown = [i for i, level in enumerate(levels)
               if level.prior_model is None
               and any(d is None for d in level.z_shape)]
    shape_specs = [
        tf.TensorSpec(
            (len(levels[i].z_shape),), tf.int32,
            name="latent_shape" if len(unknown) == 1
            else f"latent_shape_{levels[i].name}",
        )
        for i in unknown
    ]
    if target_shape is None:
        target_spec = _spec(model.inputs[0], "targets")
    else:
        target_spec = tf.TensorSpec(
            (None,) + tuple(target_shape), model.inputs[0].dtype,
            name="targets",
        )
    single = len(in_specs) == 1

    def reconstruct(*args):
        return {"reconstruction": programs.reconstruct(model, list(args))}

    def encode(*args):
        params, _ = programs.mode_pass(model, list(args), decode=False)
        out = {}
        for level, level_params in zip(levels, params):
            keys = (["features"] if level.quantizer is not None
                    else ["logits"] if len(level_params) == 1
                    else ["loc", "scale"])
            suffix = "" if len(levels) == 1 else f"_{level.name}"
            out.update({k + suffix: p for k, p in zip(keys, level_params)})
        return out

    def decode(*args):
        params = programs.decode(model, args)
        return {"params": tf.cast(params, tf.float32),
                "mean": likelihood.mean(params)}

    def sample(num_samples, seed, *rest):
        conds, shapes = rest[:len(cond_idx)], rest[len(cond_idx):]
        xs = [None] * len(model.inputs)
        for j, c in zip(cond_idx, conds):
            xs[j] = tf.repeat(c[:1], num_samples, axis=0)
        return {"samples": programs.sample(
            model, xs, num_samples, seed, dict(zip(unknown, shapes)))}

    def split(args):
        """(inputs, targets) of a `log_likelihood` / `impute` request."""
        if single:
            return args[0], args[0]
        return list(args[:-1]), args[-1]

    def log_likelihood(*args):
        # Fixed seeds: the same input always gets the same score, and
        # concurrent requests share no state.
        x, y = split(args)
        return {"log_likelihood": programs.log_likelihood(
            model, x, y, k_ll, programs.SAMPLES_PER_CHUNK,
            LOG_LIKELIHOOD_SEED)}

    archive = keras.export.ExportArchive()
    # The model's own layers, not the whole model: the objective's state
    # (`VAEModel.objective_layer`: baselines, a discriminator) is training
    # machinery and stays out of the SavedModel.
    for layer in model.layers:
        archive.track(layer)
    archive.add_endpoint("serving_default", reconstruct, in_specs)
    archive.add_endpoint("encode", encode, in_specs)
    archive.add_endpoint(
        "decode", decode, z_specs + [in_specs[j] for j in dec_idx]
    )
    quantized = [i for i, level in enumerate(levels)
                 if level.quantizer is not None]
    if not quantized:
        archive.add_endpoint(
            "sample", sample,
            [tf.TensorSpec((), tf.int32, name="num_samples"),
             tf.TensorSpec((), tf.int32, name="seed")]
            + [in_specs[j] for j in cond_idx] + shape_specs,
        )
    else:
        _add_code_endpoints(archive, model, quantized, in_specs)
    ll_specs = in_specs if single else in_specs + [target_spec]
    archive.add_endpoint("log_likelihood", log_likelihood, ll_specs)

    def impute(*args):
        # As VAEModel.impute on one chunk of examples: the same seeds.
        x, y = split(args[:-1])
        return {"imputed": programs.impute(
            model, x, y, k_ll, programs.SAMPLES_PER_CHUNK,
            derive_seed(args[-1], 0))}

    if model.missing_values is not None:
        archive.add_endpoint(
            "impute", impute,
            ll_specs + [tf.TensorSpec((), tf.int32, name="seed")],
        )

    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        archive.write_out(tmp, verbose=False)
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=".replaced-", dir=parent)
            os.rename(path, os.path.join(old, "model"))
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return path
