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


def chunked_weighted_mean(fn, num_samples, chunk_size):
    """Self-normalised importance-weighted mean Σ_k w̃_k v_k, w̃ = softmax(l).

    ```none
    Σ_k exp(l_k) v_k / Σ_k exp(l_k)      (streamed: a running logsumexp m and
                                          the mean so far, rescaled by exp(m_old - m_new))
    ```

    Args:
        fn: `fn(k, chunk_index)` -> `(l, v)`: log weights (k, B) and values
            (k, B, ...) of the chunk's k samples.
        num_samples, chunk_size: as `chunked_logmeanexp`.

    Returns:
        Tensor of shape (B, ...).
    """
    def reduce(pair):
        log_w, values = pair
        m = tf.reduce_logsumexp(log_w, axis=0)
        w = tf.exp(log_w - m[None])  # the chunk's softmax, (k, B)
        w = tf.reshape(w, tf.concat(
            [tf.shape(w), tf.ones([len(values.shape) - 2], tf.int32)], 0))
        return m, tf.reduce_sum(w * values, axis=0)

    def combine(a, b):
        m = tf.reduce_logsumexp(tf.stack([a[0], b[0]]), axis=0)
        wa, wb = tf.exp(a[0] - m), tf.exp(b[0] - m)
        total = wa + wb
        return m, (_expand(wa / total, a[1]) * a[1]
                   + _expand(wb / total, b[1]) * b[1])

    return _over_chunks(fn, num_samples, chunk_size, reduce, combine)[1]


def chunked_argmax(fn, num_samples, chunk_size):
    """The value v_k at the largest score s_k over all K samples.

    Args:
        fn: `fn(k, chunk_index)` -> `(s, v)`: scores (k, B) and values
            (k, B, ...). With s = log w + Gumbel noise this is a draw of v
            with probability w̃ (the Gumbel-max trick), streamed.
        num_samples, chunk_size: as `chunked_logmeanexp`.

    Returns:
        Tensor of shape (B, ...).
    """
    def reduce(pair):
        scores, values = pair
        best = tf.argmax(scores, axis=0, output_type=tf.int32)  # (B,)
        rows = tf.stack([best, tf.range(tf.shape(best)[0])], axis=1)
        return tf.gather_nd(scores, rows), tf.gather_nd(values, rows)

    def combine(a, b):
        take_b = b[0] > a[0]
        return (tf.where(take_b, b[0], a[0]),
                tf.where(_expand(take_b, b[1]), b[1], a[1]))

    return _over_chunks(fn, num_samples, chunk_size, reduce, combine)[1]


def _expand(w, like):
    """(B,) -> (B, 1, ...) to broadcast against `like` (B, ...)."""
    return tf.reshape(w, tf.concat([tf.shape(w), tf.ones(
        [len(like.shape) - 1], tf.int32)], 0))


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
