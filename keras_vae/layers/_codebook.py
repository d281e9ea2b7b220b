"""What the quantizers share: replica sums, code checks, usage statistics.

Private: `VectorQuantizer`, `ResidualVectorQuantizer` and
`FiniteScalarQuantizer` use these; the public contract is on the classes.
"""

import numpy as np
import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae import random as random_lib


def float_dtype(layer):
    """float64 for a float64 layer, else float32 (never a 16-bit float)."""
    return "float64" if layer.variable_dtype == "float64" else "float32"


# ------------------------------------------------------------ replicas
def _replica_context():
    """The replica context when more than one replica runs, else None."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync <= 1:
        return None
    return ctx


def replica_sum(values):
    """Sums each tensor of `values` over the replicas (identity on one)."""
    ctx = _replica_context()
    if ctx is None:
        return values
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)


def from_first_replica(value):
    """Every replica gets replica 0's `value` (e.g. its random draws)."""
    ctx = _replica_context()
    if ctx is None:
        return value
    first = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), value.dtype)
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value * first)


# -------------------------------------------------------- codebooks
def squared_distances(z, codebook):
    """||z_n - e_k||^2 of (N, D) features and (K, D) codes: (N, K)."""
    d = (tf.reduce_sum(z * z, -1, keepdims=True)
         - 2.0 * tf.matmul(z, codebook, transpose_b=True)
         + tf.reduce_sum(codebook * codebook, -1)[None, :])
    return tf.maximum(d, 0.0)


def nearest(z, codebook):
    """int32 (N,): the index of each feature's nearest code."""
    return tf.argmin(squared_distances(z, codebook), -1,
                     output_type=tf.int32)


def cluster_stats(z, idx, num_codes):
    """Replica-summed (counts (K,), sums (K, D)) of an assignment."""
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(idx, dtype=z.dtype), idx, num_codes)
    sums = tf.math.unsorted_segment_sum(z, idx, num_codes)
    return replica_sum((counts, sums))


def random_rows(z, n, seed_generator):
    """`n` rows of `z` drawn uniformly (the first replica's draw). The
    draw is `keras_vae.random.uniform`'s, identical with and without XLA
    (`keras.random.uniform`'s is not), so a compiled train step restarts
    and initialises the codebook as an eager one does."""
    u = random_lib.uniform((n,), seed_generator=seed_generator)
    size = tf.shape(z)[0]
    idx = tf.minimum(tf.cast(u * tf.cast(size, tf.float32), tf.int32),
                     size - 1)
    return from_first_replica(tf.gather(z, idx))


def kmeans(z, centres, iterations):
    """Lloyd iterations from `centres` (K, D) on features `z` (N, D), with
    replica-summed statistics; an empty cluster keeps its centre."""
    for _ in range(iterations):
        counts, sums = cluster_stats(z, nearest(z, centres),
                                     centres.shape[0])
        centres = tf.where(counts[:, None] > 0,
                           sums / tf.maximum(counts, 1.0)[:, None], centres)
    return centres


# ------------------------------------------------------------- checks
def check_num_codes(value):
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
            or value < 2):
        raise v.invalid("num_codes", "an integer >= 2", value)
    return int(value)


def check_optional_positive_int(name, value):
    if value is None:
        return None
    return v.check_positive_int(name, value)


def check_codes(codes, num_codes):
    """int32 codes; out-of-range values raise (eager) or assert (graph).

    Under XLA (`jit_compile=True`) the graph asserts are dropped by the
    compiler, as all `tf.debugging` asserts are; eager and graph calls check.
    """
    codes = tf.convert_to_tensor(codes)
    if not codes.dtype.is_integer:
        raise v.invalid(
            "codes", f"integer codes in [0, {num_codes})",
            f"<tensor of dtype {codes.dtype.name}>",
        )
    codes = tf.cast(codes, tf.int32)
    if tf.executing_eagerly():
        array = codes.numpy()
        if array.size and (array.min() < 0 or array.max() >= num_codes):
            raise v.invalid(
                "codes", f"integer codes in [0, {num_codes})",
                f"<codes with min {array.min()} and max {array.max()}>",
            )
        return codes
    message = f"Invalid value received for argument `codes`. Expected " \
              f"integer codes in [0, {num_codes})."
    checks = [
        tf.debugging.assert_non_negative(codes, message=message),
        tf.debugging.assert_less(codes, num_codes, message=message),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(codes)


def check_feature_axis(shape, expected, owner):
    """The last axis of `shape` must be known (and equal `expected`)."""
    shape = tuple(shape)
    last = shape[-1] if shape else None
    if last is None or (expected is not None and last != expected):
        want = ("features with a known last axis" if expected is None else
                f"features whose last axis is {owner}'s code dimension "
                f"{expected}")
        raise v.invalid("inputs", want, f"<inputs of shape {shape}>")
    return int(last)


# ------------------------------------------------------ usage statistics
def code_counts(codes, num_codes, dtype):
    """How many positions each code holds in the batch, summed over
    replicas: `(num_codes,)` of `dtype`."""
    flat = tf.reshape(codes, [-1])
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(flat, dtype=dtype), flat, num_codes
    )
    return replica_sum(counts)


def perplexity(counts):
    """exp(-sum_k p_k log p_k), p = counts / sum(counts); 0 log 0 = 0."""
    total = tf.reduce_sum(counts)
    p = counts / tf.maximum(total, 1.0)
    log_p = tf.math.log(tf.where(p > 0, p, tf.ones_like(p)))
    return tf.exp(-tf.reduce_sum(p * log_p))


class TracksUsage:
    """Mixin: per-code usage over a window of training steps.

    Variables (non-trainable, saved with the layer):
    `usage_step` (scalar int32, training calls so far), `last_used`
    (`(num_codes,)` int32, the step at which each code last held a position;
    0 = never) and `last_perplexity` (the perplexity of the last training
    batch). Needs `self.usage_window`.
    """

    def _build_usage(self, num_codes):
        self.usage_step = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False,
            name="usage_step",
        )
        self.last_used = self.add_weight(
            shape=(num_codes,), initializer="zeros", dtype="int32",
            trainable=False, name="last_used",
        )
        self.last_perplexity = self.add_weight(
            shape=(), initializer="zeros", dtype="float32", trainable=False,
            name="last_perplexity", autocast=False,
        )

    def _update_usage(self, counts):
        """Records one training step's `counts`; returns the step number."""
        step = self.usage_step + 1
        self.usage_step.assign(step)
        self.last_used.assign(tf.where(counts > 0, step, self.last_used))
        self.last_perplexity.assign(
            tf.cast(perplexity(tf.cast(counts, tf.float32)), tf.float32)
        )
        return step

    def _codebook_usage(self):
        """Fraction of codes used in the last `usage_window` training steps
        (float32 scalar; 0 before the first training step)."""
        step = tf.convert_to_tensor(self.usage_step)
        last = tf.convert_to_tensor(self.last_used)
        recent = (last > 0) & (last > step - self.usage_window)
        return tf.reduce_mean(tf.cast(recent, tf.float32))

    def usage_metrics(self, codes=None):
        """The codebook-health metrics, as float32 scalars.

        Args:
            codes: optional integer codes of a batch (as `codes()` returns).
                Given, `perplexity` is that batch's; otherwise the last
                training batch's (stored by the training call, so a train
                step reads it after the forward pass at no cost).

        Returns:
            `{"perplexity": exp(entropy of the code frequencies in the
            batch), "codebook_usage": fraction of the codes used in the
            last usage_window training steps}`.
        """
        if codes is None:
            ppl = tf.convert_to_tensor(self.last_perplexity)
        else:
            counts = code_counts(
                tf.cast(codes, tf.int32), self.num_codes, tf.float32
            )
            ppl = perplexity(counts)
        return {"perplexity": ppl, "codebook_usage": self._codebook_usage()}



class SameShapeOutput:
    """Mixin of the quantizers: the output has the input's shape, and the
    input's last axis must be `self._feature_size()` wide."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, training=None):
        check_feature_axis(inputs.shape, self._feature_size(), self.name)
        return keras.KerasTensor(tuple(inputs.shape), dtype=float_dtype(self))
