"""The inference programs of a VAEModel: one TF function per question.

Each program is a plain function of the model and tensors, traceable
inside any `tf.function` (XLA included). The array side
(`keras_vae.models.inference`: padding, chunks of examples, progress
bars, the compiled-function cache) and the exported SavedModel
(`keras_vae.models.export`) both call these, so a signature and the
method of the same name compute the same thing by construction:

| program | returns |
| --- | --- |
| `reconstruct(model, xs)` | E[x \\| z] with every level at its posterior mode |
| `mode_pass(model, xs, decode)` | posterior params and mode z per level (+ likelihood params) |
| `decode(model, inputs)` | likelihood parameters of the decoder's inputs (z..., conditions) |
| `encode_codes(model, xs)` | the integer codes of each quantized level at the posterior mode |
| `decode_codes(model, inputs)` | likelihood parameters of `[codes per latent the decoder reads..., conditions]` |
| `sample(model, xs, num_rows, seed, latent_shapes)` | the likelihood mean of ancestral prior draws |
| `log_likelihood(model, x, y, K, chunk, seed, params)` | log (1/K) Σ_k w_k per example |
| `elbo(model, x, y, K, chunk, seed, params)` | (1/K) Σ_k log p(x \\| z_k) - KL per example |
| `impute(model, x, y, K, chunk, seed, params)` | y with missing entries replaced by Σ_k w̃_k E[x \\| z_k] |
| `impute_params(model, x, y, K, chunk, seed, params)` | the likelihood params of a z drawn in proportion to w |
| `log_likelihood_and_ess`, `impute_and_ess` (same arguments) | `(log_likelihood, ESS)`, `(impute, ESS)`: with the weights' effective sample size |

Seeds: chunk c of importance samples draws with `derive_seed(seed, c)`
(`seed`: an int scalar or an int32 (2,) tensor); `params` are per-example
posterior parameters replacing the encoder's (refinement), or None.
"""

import tensorflow as tf

from keras_vae import objectives
from keras_vae.models import missing as missing_lib
from keras_vae.models.trace import MODE, PRIOR
from keras_vae.random import derive_seed, uniform

# Importance samples per decoder call of the exported signatures and of
# `impute` (so that both draw the same samples for one seed); the memory of
# a request grows with batch x this, not batch x K.
SAMPLES_PER_CHUNK = 16


def reconstruct(model, xs):
    """The likelihood's mean at the posterior mode of every level."""
    trace = model.trace(xs, mode=MODE)
    return model.likelihood.mean(trace.decoder_params)


def mode_pass(model, xs, decode=True):
    """`(params per level, z per level[, likelihood params])` with every
    level at its posterior mode, each given the earlier levels' modes."""
    trace = model.trace(xs, mode=MODE, decode=decode)
    out = ([list(level.params) for level in trace.levels],
           [level.z for level in trace.levels])
    return out + (trace.decoder_params,) if decode else out


def decode(model, inputs):
    """The decoder's output (likelihood parameters) for `[z..., conds]`."""
    return model.decoder(list(inputs), training=False)


def encode_codes(model, xs):
    """The codes of each quantized level (int32 `(B, ...)`, a trailing
    stage axis for residual VQ) at the posterior mode, in `levels` order:
    the codes whose vectors `reconstruct` decodes."""
    trace = model.trace(xs, mode=MODE, decode=False)
    return [level.quantizer.codes(record.params[0])
            for level, record in zip(model.levels, trace.levels)
            if level.quantizer is not None]


def decode_codes(model, inputs):
    """The decoder's output for `[codes of each latent the decoder reads
    (graph.decoder_z, all quantized)..., conditions]`: each level's
    `lookup(codes)` (the vectors its forward pass outputs for those
    codes) decoded. The lookup checks the codes' range (a
    `tf.debugging` assertion, which XLA drops: check before a jit call)."""
    n = len(model.graph.decoder_z)
    zs = [model.levels[d].quantizer.lookup(codes)
          for d, codes in zip(model.graph.decoder_z, inputs[:n])]
    return decode(model, zs + list(inputs[n:]))


def sample(model, xs, num_rows, seed, latent_shapes=None):
    """The likelihood's mean of `num_rows` ancestral draws from the prior
    (`xs`: the model inputs, the conditions set and the rest None)."""
    trace = model.trace(xs, mode=PRIOR, seed=derive_seed(seed),
                        num_rows=num_rows, latent_shapes=latent_shapes or {})
    return model.likelihood.mean(trace.decoder_params)


def _chunks(model, x, y, seed, params, values_fn):
    """`chunk(k, index)` for `objectives.chunked_*`: a trace of k samples
    drawn with `derive_seed(seed, index)`, mapped by `values_fn`."""
    def chunk(k, index):
        chunk_seed = derive_seed(seed, index)
        trace = model.trace(x, y, num_samples=k, seed=chunk_seed,
                            posterior_params=params)
        return values_fn(trace, chunk_seed)
    return chunk


def log_likelihood_and_ess(model, x, y, num_samples, chunk_size, seed,
                           params=None):
    """`(log_likelihood, ESS)` per example, in one pass over the chunks:
    the importance-sampled log p(x) (log p(x_obs) with missing entries),
    log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x), and the
    effective sample size of its weights
    (`objectives.effective_sample_size`)."""
    return objectives.chunked_logmeanexp_and_ess(
        _chunks(model, x, y, seed, params, lambda t, _: t.log_weights()),
        num_samples, chunk_size)


def log_likelihood(model, x, y, num_samples, chunk_size, seed, params=None):
    """The estimate of `log_likelihood_and_ess` alone (the exported
    signature): the same numbers as the array method's."""
    return log_likelihood_and_ess(model, x, y, num_samples, chunk_size, seed,
                                  params)[0]


def elbo(model, x, y, num_samples, chunk_size, seed, params=None):
    """The K-sample ELBO per example, β = 1."""
    return objectives.chunked_mean(
        _chunks(model, x, y, seed, params,
                lambda t, _: t.log_px_z - t.kl[None]),
        num_samples, chunk_size)


def imputation_terms(trace, likelihood):
    """`(log w, E[x | z])`, each `(K, B, ...)`: what the self-normalised
    estimate of E[x_mis | x_obs] weighs."""
    return trace.log_weights(), trace.per_sample(
        likelihood.mean(trace.decoder_params))


def impute_and_ess(model, x, y, num_samples, chunk_size, seed, params=None):
    """`y` with each missing entry replaced by E[x_mis | x_obs]
    (self-normalised importance sampling; observed entries as given), and
    the effective sample size of its importance weights, per example."""
    filled, ess = objectives.chunked_weighted_mean_and_ess(
        _chunks(model, x, y, seed, params,
                lambda t, _: imputation_terms(t, model.likelihood)),
        num_samples, chunk_size)
    y = tf.cast(y, filled.dtype)
    return tf.where(missing_lib.observed(y, model.missing_values), y,
                    filled), ess


def impute(model, x, y, num_samples, chunk_size, seed, params=None):
    """The imputation of `impute_and_ess` alone (the exported signature)."""
    return impute_and_ess(model, x, y, num_samples, chunk_size, seed,
                          params)[0]


def impute_params(model, x, y, num_samples, chunk_size, seed, params=None):
    """The likelihood parameters at one z per example drawn from the K
    proposals in proportion to w (sampling importance resampling: the
    argmax of log w_k + Gumbel noise over all K, kept across chunks)."""
    def values(trace, chunk_seed):
        log_w = trace.log_weights()
        gumbel = -tf.math.log(-tf.math.log(uniform(
            tf.shape(log_w), seed=derive_seed(chunk_seed, -3))))
        return log_w + gumbel, trace.per_sample(
            tf.cast(trace.decoder_params, tf.float32))

    return objectives.chunked_argmax(
        _chunks(model, x, y, seed, params, values), num_samples, chunk_size)
