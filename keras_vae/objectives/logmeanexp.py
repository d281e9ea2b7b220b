"""log-mean-exp over many importance samples, in chunks of samples.

```none
log (1/K) sum_{k<K} exp(l_k) = logsumexp_chunks( logsumexp_{k in chunk} l_k ) - log K
```

The one implementation behind `VAEModel.log_likelihood` and the exported
`log_likelihood` signature: a `tf.while_loop` over equal chunks (plus one
remainder), so memory grows with the chunk, not with K, and XLA compiles
the loop body once.
"""

import math

import tensorflow as tf


def chunked_logmeanexp(log_weights_fn, num_samples, chunk_size):
    """log (1/K) Σ_k exp(l_k) over K = `num_samples` samples, per example.

    Args:
        log_weights_fn: `fn(k, chunk_index)` -> log weights of shape
            (k, B) for the chunk's k samples (k is a Python int; the
            chunk index an int32 scalar tensor, to derive the chunk's
            seed from).
        num_samples: K, a positive Python int.
        chunk_size: samples per call of `log_weights_fn` (a Python int).

    Returns:
        Tensor of shape (B,).
    """
    return _over_chunks(
        log_weights_fn, num_samples, chunk_size,
        lambda l: tf.reduce_logsumexp(l, axis=0),
        lambda a, b: tf.reduce_logsumexp(tf.stack([a, b]), axis=0),
    ) - math.log(num_samples)


def chunked_mean(values_fn, num_samples, chunk_size):
    """(1/K) Σ_k v_k, over chunks as `chunked_logmeanexp` (shape (B,))."""
    return _over_chunks(
        values_fn, num_samples, chunk_size,
        lambda v: tf.reduce_sum(v, axis=0), tf.add,
    ) / float(num_samples)


def _over_chunks(fn, num_samples, chunk_size, reduce, combine):
    """combine(reduce(chunk_0), reduce(chunk_1), ...) over the chunks."""
    k_chunk = max(1, min(int(num_samples), int(chunk_size)))
    full, rest = divmod(int(num_samples), k_chunk)
    first = reduce(fn(k_chunk, tf.constant(0, tf.int32)))
    if full > 1:
        _, first = tf.while_loop(
            lambda i, _: i < full,
            lambda i, acc: (i + 1, combine(acc, reduce(fn(k_chunk, i)))),
            (tf.constant(1, tf.int32), first),
        )
    if rest:
        first = combine(first, reduce(fn(rest, tf.constant(full, tf.int32))))
    return first
