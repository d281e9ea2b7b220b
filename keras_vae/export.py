"""SavedModel export of a VAEModel for TF Serving.

Signatures (each with named inputs and outputs and a dynamic batch axis):

| signature | inputs | outputs |
| --- | --- | --- |
| `serving_default` | model inputs (`x`, or `x`, `condition_1`, ...) | `reconstruction` (likelihood mean at the posterior mean) |
| `encode` | model inputs | `loc`, `scale` (`logits` for a categorical latent; with several latents `loc_<level>`, `scale_<level>`, ...) |
| `decode` | `z` (`z_<level>` for each latent the decoder reads, when several) (+ conditions) | `params` (likelihood parameters), `mean` |
| `sample` | `num_samples` (int32 scalar), `seed` (int32 scalar) (+ conditions, one row each) (+ `latent_shape` (int32 vector) when a latent's size is known only at run time) | `samples` (ancestral through the levels) |
| `log_likelihood` | model inputs (+ `targets` for a conditional model, shaped like the first input unless `target_shape` says otherwise) | `log_likelihood` (per example, importance-sampled with a fixed K, in chunks of 16 samples; deterministic: fixed seeds, so the same request gets the same scores; a row batched with other rows gets other draws, within the Monte Carlo error) |
| `impute` (models compiled with `missing_values`) | model inputs (+ `targets`, as above), `seed` (int32 scalar) | `imputed`: the data with each missing entry replaced by E[x_mis \| x_obs] (self-normalised importance sampling, K = `log_likelihood_samples`); the same numbers as `VAEModel.impute(x, num_samples=K, seed=seed, batch_size=len(x))` |

Every signature runs the model's one forward pass, `VAEModel.trace`, and
the `log_likelihood` signature the same chunked log-mean-exp
(`keras_vae.objectives.chunked_logmeanexp`) as `VAEModel.log_likelihood`.

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
from keras_vae import objectives
from keras_vae.models import missing as missing_lib
from keras_vae.models.inference import (
    IMPUTE_SAMPLES_PER_CHUNK,
    imputation_terms,
)
from keras_vae.random import derive_seed

# Importance samples per decoder call in the `log_likelihood` signature: the
# memory of a request grows with batch x this, not batch x K.
_SAMPLES_PER_CHUNK = 16
# Seed of the `log_likelihood` signature's noise (chunks derive theirs).
_LOG_LIKELIHOOD_SEED = 20131220


def _spec(tensor, name):
    return tf.TensorSpec(
        (None,) + tuple(tensor.shape[1:]), tensor.dtype, name=name
    )


def _input_names(model):
    if len(model.inputs) == 1:
        return ["x"]
    return ["x"] + [f"input_{i}" for i in range(1, len(model.inputs))]


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
        trace = model.trace(list(args), mode="mode")
        return {"reconstruction": likelihood.mean(trace.decoder_params)}

    def encode(*args):
        trace = model.trace(list(args), mode="mode", decode=False)
        out = {}
        for level in trace.levels:
            params = level.params
            keys = ["logits"] if len(params) == 1 else ["loc", "scale"]
            suffix = "" if len(levels) == 1 else f"_{level.name}"
            out.update({k + suffix: p for k, p in zip(keys, params)})
        return out

    def decode(*args):
        zs, conds = list(args[:len(z_specs)]), list(args[len(z_specs):])
        params = model.decoder(zs + conds, training=False)
        return {"params": tf.cast(params, tf.float32),
                "mean": likelihood.mean(params)}

    def sample(num_samples, seed, *rest):
        conds, shapes = rest[:len(cond_idx)], rest[len(cond_idx):]
        xs = [None] * len(model.inputs)
        for j, c in zip(cond_idx, conds):
            xs[j] = tf.repeat(c[:1], num_samples, axis=0)
        trace = model.trace(
            xs, mode="prior", seed=derive_seed(seed), num_rows=num_samples,
            latent_shapes=dict(zip(unknown, shapes)),
        )
        return {"samples": likelihood.mean(trace.decoder_params)}

    def log_likelihood(*args):
        if len(in_specs) == 1:
            x, y = args[0], args[0]
        else:
            x, y = list(args[:-1]), args[-1]

        def chunk(k, index):
            # Fixed seeds: the same input always gets the same score, and
            # concurrent requests share no state.
            seed = derive_seed(_LOG_LIKELIHOOD_SEED, index)
            return model.trace(x, y, num_samples=k, seed=seed).log_weights()

        return {"log_likelihood": objectives.chunked_logmeanexp(
            chunk, k_ll, _SAMPLES_PER_CHUNK
        )}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", reconstruct, in_specs)
    archive.add_endpoint("encode", encode, in_specs)
    archive.add_endpoint(
        "decode", decode, z_specs + [in_specs[j] for j in dec_idx]
    )
    archive.add_endpoint(
        "sample", sample,
        [tf.TensorSpec((), tf.int32, name="num_samples"),
         tf.TensorSpec((), tf.int32, name="seed")]
        + [in_specs[j] for j in cond_idx] + shape_specs,
    )
    ll_specs = in_specs if single else in_specs + [target_spec]
    archive.add_endpoint("log_likelihood", log_likelihood, ll_specs)

    def impute(*args):
        seed, args = args[-1], args[:-1]
        if len(in_specs) == 1:
            x, y = args[0], args[0]
        else:
            x, y = list(args[:-1]), args[-1]
        # As VAEModel.impute on one chunk of examples: the same seeds.
        seed = derive_seed(seed, 0)

        def chunk(k, index):
            trace = model.trace(x, y, num_samples=k,
                                seed=derive_seed(seed, index))
            return imputation_terms(trace, likelihood)

        filled = objectives.chunked_weighted_mean(
            chunk, k_ll, IMPUTE_SAMPLES_PER_CHUNK
        )
        y = tf.cast(y, filled.dtype)
        mask = missing_lib.observed(y, model.missing_values)
        return {"imputed": tf.where(mask, y, filled)}

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
