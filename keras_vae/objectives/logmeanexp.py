"""log-mean-exp over many importance samples, in chunks of samples.

```none
log (1/K) sum_{k<K} exp(l_k) = logsumexp_chunks( logsumexp_{k in chunk} l_k ) - log K
```

The one implementation behind `VAEModel.log_likelihood` and the exported
`log_likelihood` signature: a `tf.while_loop` over chunks of one size, so
memory grows with the chunk, not with K. The chunk function is traced once
(a nested `tf.function`) whatever K is: K = 97 in chunks of 32 is four
chunks of 25, the last three samples of the last one dropped, not three
chunks of 32 and a remainder of 1 traced and compiled a second time.
"""

import math

import tensorflow as tf


def chunked_logmeanexp(log_weights_fn, num_samples, chunk_size):
    """log (1/K) Σ_k exp(l_k) over K = `num_samples` samples, per example.

    Args:
        log_weights_fn: `fn(k, chunk_index)` -> log weights of shape
            (k, B) for the chunk's k samples (k is a Python int, the same
            for every chunk, `chunk_plan(num_samples, chunk_size)[1]`; the
            chunk index an int32 scalar tensor, to derive the chunk's seed
            from). Chunk i holds samples i*k ... i*k + k - 1; those at K
            and beyond (fewer than the number of chunks, all in the last
            chunk) are dropped. Traced once.
        num_samples: K, a positive Python int.
        chunk_size: at most this many samples per call of
            `log_weights_fn` (a Python int).

    Returns:
        Tensor of shape (B,).
    """
    return _over_chunks(
        log_weights_fn, num_samples, chunk_size,
        lambda l: tf.reduce_logsumexp(l, axis=0),
        lambda a, b: tf.reduce_logsumexp(tf.stack([a, b]), axis=0),
        lambda l, keep: _where(keep, l, -math.inf),
    ) - math.log(num_samples)


def chunked_mean(values_fn, num_samples, chunk_size):
    """(1/K) Σ_k v_k, over chunks as `chunked_logmeanexp` (shape (B,))."""
    return _over_chunks(
        values_fn, num_samples, chunk_size,
        lambda v: tf.reduce_sum(v, axis=0), tf.add,
        lambda v, keep: _where(keep, v, 0.0),
    ) / float(num_samples)


def effective_sample_size(log_weights, axis=0):
    """Kish's effective sample size of importance weights w = exp(l).

    ```none
    ESS = (Σ_k w_k)² / Σ_k w_k² = exp(2 logsumexp(l) - logsumexp(2 l))     1 <= ESS <= K
    ```

    K when every weight is equal (q is the posterior), 1 when one weight
    dominates: the importance-sampled log p(x) or E[x_mis | x_obs] then
    rests on that one draw, and is likely far from its limit.

    Args:
        log_weights: log importance weights, the samples along `axis`.
        axis: the samples' axis (default 0, as `(K, B)` weights).

    Returns:
        The ESS, with `axis` reduced.
    """
    log_weights = tf.convert_to_tensor(log_weights)
    return tf.exp(2.0 * tf.reduce_logsumexp(log_weights, axis=axis)
                  - tf.reduce_logsumexp(2.0 * log_weights, axis=axis))


def chunked_logmeanexp_and_ess(log_weights_fn, num_samples, chunk_size):
    """`chunked_logmeanexp` and the weights' `effective_sample_size`, in one
    pass: the running logsumexp of l and of 2 l.

    Args:
        log_weights_fn, num_samples, chunk_size: as `chunked_logmeanexp`.

    Returns:
        `(log (1/K) Σ_k exp(l_k), ESS)`, each of shape (B,).
    """
    m, m2 = _over_chunks(
        log_weights_fn, num_samples, chunk_size,
        lambda l: (tf.reduce_logsumexp(l, axis=0),
                   tf.reduce_logsumexp(2.0 * l, axis=0)),
        lambda a, b: (_logaddexp(a[0], b[0]), _logaddexp(a[1], b[1])),
        lambda l, keep: _where(keep, l, -math.inf),
    )
    return m - math.log(num_samples), tf.exp(2.0 * m - m2)


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
    return chunked_weighted_mean_and_ess(fn, num_samples, chunk_size)[0]


def chunked_weighted_mean_and_ess(fn, num_samples, chunk_size):
    """`chunked_weighted_mean` and the weights' effective sample size
    (`effective_sample_size`), in one pass over the chunks.

    Returns:
        `(mean, ess)`: shapes (B, ...) and (B,).
    """
    def reduce(pair):
        log_w, values = pair
        m = tf.reduce_logsumexp(log_w, axis=0)
        w = tf.exp(log_w - m[None])  # the chunk's softmax, (k, B)
        w = tf.reshape(w, tf.concat(
            [tf.shape(w), tf.ones([len(values.shape) - 2], tf.int32)], 0))
        return (m, tf.reduce_sum(w * values, axis=0),
                tf.reduce_logsumexp(2.0 * log_w, axis=0))

    def combine(a, b):
        m = tf.reduce_logsumexp(tf.stack([a[0], b[0]]), axis=0)
        wa, wb = tf.exp(a[0] - m), tf.exp(b[0] - m)
        total = wa + wb
        return m, (_expand(wa / total, a[1]) * a[1]
                   + _expand(wb / total, b[1]) * b[1]), _logaddexp(a[2], b[2])

    def drop(pair, keep):
        return _where(keep, pair[0], -math.inf), _where(keep, pair[1], 0.0)

    m, mean, m2 = _over_chunks(fn, num_samples, chunk_size, reduce, combine,
                               drop)
    return mean, tf.exp(2.0 * m - m2)


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

    def drop(pair, keep):
        return _where(keep, pair[0], -math.inf), pair[1]

    return _over_chunks(fn, num_samples, chunk_size, reduce, combine,
                        drop)[1]


def _logaddexp(a, b):
    return tf.reduce_logsumexp(tf.stack([a, b]), axis=0)


def _where(keep, values, fill):
    """`values` where the (k,) mask `keep` holds, else `fill` (per sample)."""
    keep = tf.reshape(keep, [-1] + [1] * (len(values.shape) - 1))
    return tf.where(keep, values, tf.cast(fill, values.dtype))


def _expand(w, like):
    """(B,) -> (B, 1, ...) to broadcast against `like` (B, ...)."""
    return tf.reshape(w, tf.concat([tf.shape(w), tf.ones(
        [len(like.shape) - 1], tf.int32)], 0))


def chunk_plan(num_samples, chunk_size):
    """`(chunks, k)`: K samples as the fewest chunks of at most
    `chunk_size`, all of the same size k (so `fn` is traced for one shape).

    `chunks * k >= K` and the excess `chunks * k - K < chunks` samples are
    drawn in the last chunk and dropped.
    """
    num_samples = int(num_samples)
    chunks = -(-num_samples // max(1, min(num_samples, int(chunk_size))))
    return chunks, -(-num_samples // chunks)


def _over_chunks(fn, num_samples, chunk_size, reduce, combine, drop):
    """combine(reduce(chunk_0), reduce(chunk_1), ...) over the chunks.

    `fn` is traced once: every chunk has the same k samples (`chunk_plan`),
    the chunk is a nested function called before and inside the loop, and
    `drop(out, keep)` neutralises the excess samples of the last chunk
    (`keep`: a (k,) boolean mask).
    """
    chunks, k = chunk_plan(num_samples, chunk_size)
    excess = chunks * k - int(num_samples)

    def summary(index):
        out = fn(k, index)
        if excess:
            out = drop(out, index * k + tf.range(k) < int(num_samples))
        return reduce(out)

    if chunks == 1:
        return summary(tf.constant(0, tf.int32))
    # One trace of `fn`, called twice (the first chunk starts the
    # accumulator, whose shape only the chunk's output tells).
    summary = tf.function(summary, autograph=False).get_concrete_function(
        tf.TensorSpec((), tf.int32))
    _, total = tf.while_loop(
        lambda i, _: i < chunks,
        lambda i, acc: (i + 1, combine(acc, summary(i))),
        (tf.constant(1, tf.int32), summary(tf.constant(0, tf.int32))),
    )
    return total
