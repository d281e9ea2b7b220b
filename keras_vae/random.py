"""Standard-normal noise that is identical with and without XLA.

`keras.random.normal` (TensorFlow's stateless normal sampler) gives
different numbers for the same seed inside and outside `jit_compile=True`:
the raw Philox bits agree, but TF's kernel and XLA turn them into floats
differently. A VAE's loss then depends on whether the step is compiled,
and `fit` with and without XLA cannot be compared for the same seed.

So the noise is made from the part that does agree (to the last float32
ulp, where TF's and XLA's `ndtri` may differ), the raw Philox
`uint32` bits (drawn with the seed of a `keras.random.SeedGenerator`), and
mapped to N(0, 1) by the inverse normal CDF:

```none
u   = (bits >> 9 + 0.5) * 2^-23       in [2^-24, 1 - 2^-24], exact in float32
eps = ndtri(u)                        |eps| <= 5.3
```

Under a multi-replica `tf.distribute` strategy each replica offsets the
seed by its replica id, so replicas draw independent noise.
"""

import tensorflow as tf

# Offset of each replica's seed (the golden-ratio constant, so that streams
# of replicas and of layers seeded with nearby integers do not collide).
_REPLICA_STRIDE = 0x9E3779B9
# Offset of each index in `derive_seed` (another odd constant, for the same
# reason).
_INDEX_STRIDE = 0x85EBCA6B


def derive_seed(seed, *indices):
    """A stateless seed (int32, shape (2,)) for `indices` under `seed`.

    The one rule by which every fixed-seed draw of the package splits its
    seed: per latent level (`derive_seed(seed, level)`), per chunk of
    importance samples (`derive_seed(seed, chunk)`), per chunk of examples.
    Each index step hashes `(seed + (index * stride, index))` through
    Philox (the raw bits, which TF and XLA agree on) into a new seed of two
    non-negative int32 values, so different index paths give independent
    streams, identical with and without XLA. (TF's `stateless_fold_in`
    does not: chained under XLA it returns other seeds, as a test shows.)

    Args:
        seed: an int or int scalar tensor, or an int tensor of shape (2,)
            (a stateless seed).
        *indices: ints or int scalar tensors.
    """
    seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([tf.constant(0, tf.int64), seed])
    for index in indices:
        index = tf.cast(index, tf.int64)
        key = seed + tf.stack([index * _INDEX_STRIDE, index])
        bits = tf.random.stateless_uniform(
            [2], seed=key, minval=None, maxval=None, dtype=tf.uint32,
            alg="philox",
        )
        seed = tf.cast(tf.bitwise.right_shift(bits, tf.constant(1, tf.uint32)),
                       tf.int64)
    return tf.cast(seed, tf.int32)


def uniform(shape, seed_generator=None, seed=None):
    """U(0, 1) float32 noise of `shape`, strictly inside (0, 1).

    Values are (k + 0.5) 2^-23 for 23-bit integers k: in [2^-24, 1 - 2^-24],
    so log(u), log(1 - u) and ndtri(u) are finite. Seeded as
    `standard_normal`; identical with and without XLA.
    """
    return _bits_to_uniform(_philox_bits(shape, seed_generator, seed))


def standard_normal(shape, seed_generator=None, seed=None):
    """N(0, I) float32 noise of `shape`.

    Seeded by `seed_generator` (a `keras.random.SeedGenerator`, whose state
    advances), or by a fixed `seed` (an int tensor of shape (2,)): the same
    seed gives the same noise, with no state to update.
    """
    return tf.math.ndtri(uniform(shape, seed_generator, seed))


def _bits_to_uniform(bits):
    """uint32 bits -> u in [2^-24, 1 - 2^-24], never 0 or 1.

    23 bits, so that k + 0.5 (k < 2^23) is exact in float32 and u never
    rounds to 0 or 1 (with 24 bits, k = 2^24 - 1 rounds to u = 1 and
    ndtri(1) = inf, about once in 2^24 draws).
    """
    bits = tf.bitwise.right_shift(bits, tf.constant(9, tf.uint32))
    return (tf.cast(bits, tf.float32) + 0.5) * (2.0 ** -23)


def _philox_bits(shape, seed_generator, seed):
    """Raw uint32 Philox bits: the part TF and XLA agree on."""
    if seed is None:
        seed = seed_generator.next()
    seed = tf.cast(seed, tf.int64)
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:
        # Every replica holds the same seed state: give each its own stream,
        # or the replicas' halves of a batch would share their noise.
        rid = tf.cast(replica.replica_id_in_sync_group, tf.int64)
        seed = seed + tf.stack([rid * _REPLICA_STRIDE, tf.constant(0, tf.int64)])
    return tf.random.stateless_uniform(
        shape, seed=seed, minval=None, maxval=None, dtype=tf.uint32,
        alg="philox",
    )
