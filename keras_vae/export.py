"""SavedModel export of a VAEModel for TF Serving.

Signatures (each with named inputs and outputs and a dynamic batch axis):

| signature | inputs | outputs |
| --- | --- | --- |
| `serving_default` | model inputs (`x`, or `x`, `condition_1`, ...) | `reconstruction` (likelihood mean at the posterior mean) |
| `encode` | model inputs | `loc`, `scale` (`logits` for a categorical latent; with several latents `loc_<level>`, `scale_<level>`, ...) |
| `decode` | `z` (`z_<level>` for each latent the decoder reads, when several) (+ conditions) | `params` (likelihood parameters), `mean` |
| `sample` | `num_samples` (int32 scalar), `seed` (int32 scalar) (+ conditions, one row each) | `samples` (ancestral through the levels) |
| `log_likelihood` | model inputs (+ `targets` for a conditional model, shaped like the first input unless `target_shape` says otherwise) | `log_likelihood` (per example, importance-sampled with a fixed K, in chunks of 16 samples; deterministic: fixed seeds, so the same request gets the same scores; a row batched with other rows gets other draws, within the Monte Carlo error) |

The SavedModel needs only TensorFlow to load (`tf.saved_model.load`), not
keras_vae. It is written to a temporary directory next to `path` and moved
into place with one rename, so a crash mid-export never leaves a partial
model where a server would load it.
"""

import math
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae import objectives

# Importance samples per decoder call in the `log_likelihood` signature: the
# memory of a request grows with batch x this, not batch x K.
_SAMPLES_PER_CHUNK = 16
# Seed of the `log_likelihood` signature's noise (with the chunk index).
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
    graph = model._parts.graph
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
    if target_shape is None:
        target_spec = _spec(model.inputs[0], "targets")
    else:
        target_spec = tf.TensorSpec(
            (None,) + tuple(target_shape), model.inputs[0].dtype,
            name="targets",
        )
    single = len(in_specs) == 1

    def reconstruct(*args):
        _, _, params = model._mode_pass(list(args))
        return {"reconstruction": likelihood.mean(params)}

    def encode(*args):
        per_level, _ = model._mode_pass(list(args), decode=False)
        out = {}
        for level, params in zip(levels, per_level):
            keys = ["logits"] if len(params) == 1 else ["loc", "scale"]
            suffix = "" if len(levels) == 1 else f"_{level.name}"
            out.update({k + suffix: p for k, p in zip(keys, params)})
        return out

    def decode(*args):
        zs, conds = list(args[:len(z_specs)]), list(args[len(z_specs):])
        params = model.decoder(zs + conds, training=False)
        return {"params": tf.cast(params, tf.float32),
                "mean": likelihood.mean(params)}

    def sample(num_samples, seed, *conds):
        conds = {
            j: tf.repeat(c[:1], num_samples, axis=0)
            for j, c in zip(cond_idx, conds)
        }
        params = model._ancestral(num_samples, seed, conds)
        return {"samples": likelihood.mean(params)}

    k_chunk = min(k_ll, _SAMPLES_PER_CHUNK)
    full_chunks, rest = divmod(k_ll, k_chunk)

    def log_likelihood(*args):
        if len(in_specs) == 1:
            x, y = args[0], args[0]
        else:
            x, y = list(args[:-1]), args[-1]

        def chunk(k, index):
            # Fixed seeds: the same input always gets the same score, and
            # concurrent requests share no state.
            seed = tf.stack([tf.constant(_LOG_LIKELIHOOD_SEED, tf.int64),
                             tf.cast(index, tf.int64)])
            t = model._terms(x, y, k, training=False, seed=seed)
            log_w = objectives.log_weights(
                t["log_px_z"], t["log_pz"], t["log_qz"]
            )
            return tf.reduce_logsumexp(log_w, axis=0)

        def add(total, index, k):
            return tf.reduce_logsumexp(tf.stack([total, chunk(k, index)]), 0)

        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        total = tf.fill([batch], -float("inf"))
        _, total = tf.while_loop(
            lambda i, _: i < full_chunks,
            lambda i, acc: (i + 1, add(acc, i, k_chunk)),
            (tf.constant(0), total),
        )
        if rest:
            total = add(total, full_chunks, rest)
        return {"log_likelihood": total - math.log(k_ll)}

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
        + [in_specs[j] for j in cond_idx],
    )
    ll_specs = in_specs if single else in_specs + [target_spec]
    archive.add_endpoint("log_likelihood", log_likelihood, ll_specs)

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
