"""VectorQuantizer: nearest-code quantisation with an EMA codebook."""

import math

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.layers import _codebook as cb
from keras_vae.seed_state import SavesSeedState


@keras.saving.register_keras_serializable(package="keras_vae")
class VectorQuantizer(cb.TracksUsage, cb.SameShapeOutput, SavesSeedState,
                      keras.layers.Layer):
    """Replaces each feature vector by its nearest code (VQ-VAE).

    ```none
    k(z)    = argmin_k ||z - e_k||^2          (squared distances in float32)
    output  = e_k(z) + (z - stop_gradient(z)) (straight-through: exactly e_k(z)
                                               in value, gradient the identity)
    losses  = commitment_cost * mean (z - sg(e_k(z)))^2        (always)
            + mean (sg(z) - e_k(z))^2       (only when ema_decay is None)
    EMA step, per code k (ema_decay = g, epsilon = eps, K codes):
        n_k   = #{positions with k(z) = k},   s_k = sum of those z
        N_k  <- g N_k + (1 - g) n_k           m_k <- g m_k + (1 - g) s_k
        e_k  <- m_k / ((N_k + eps) / (sum_j N_j + K eps) * sum_j N_j)
    ```

    Means run over every element of the batch (positions and the code
    dimension), as in van den Oord et al. Features `(B, ..., D)` are
    quantised independently at every position; D is read from the input's
    last axis when the layer is built.

    Codebook learning. With `ema_decay` (the default) the codebook is not
    trained by gradients: counts N and sums m are exponential moving
    averages over training batches, with Laplace smoothing `epsilon`, and the
    codebook is their ratio (Razavi et al.). With `ema_decay=None` it is a
    trainable weight learned through the codebook loss. Both modes take:

    - `kmeans_init`: the first training batch's features are clustered by
      `kmeans_iters` Lloyd iterations (started from random feature vectors)
      and the codebook starts at the centroids;
    - `restart_after_steps` (on by default): a code that held no position
      for that many consecutive training steps is re-seeded with a random
      feature vector of the current batch (its EMA count set to 1);
    - `l2_normalize`: features and codes are compared (and output) on the
      unit sphere (cosine similarity; Yu et al.). A low-dimensional lookup
      is a `Dense` to a few units before the layer and back after it.

    These updates are variable assignments inside the training call (like
    BatchNorm's moving statistics), so they run inside a compiled or XLA
    train step; the call quantises with the codebook as it was before its
    own update. Under `tf.distribute` (e.g. `MirroredStrategy`), the counts
    and sums are summed over the replicas and random draws (restarts,
    k-means seeds) come from the first replica, so every replica keeps the
    same codebook.

    Metrics: the training call stores the batch's perplexity and per-code
    usage; `usage_metrics()` returns `{"perplexity", "codebook_usage"}`
    (see the guide "Vector-quantised latents"). `codes()` gives the integer
    code of each position and `lookup()` maps codes back to vectors.

    Args:
        num_codes: integer >= 2, the codebook size K.
        commitment_cost: float >= 0 (default 0.25), beta of the commitment
            loss.
        ema_decay: float in [0, 1) (default 0.99), or None for a codebook
            trained by the codebook loss.
        epsilon: float > 0 (default 1e-5), Laplace smoothing of the EMA
            counts.
        kmeans_init: bool (default False), k-means initialisation from the
            first training batch.
        kmeans_iters: positive integer (default 10), Lloyd iterations of
            the k-means initialisation.
        restart_after_steps: positive integer (default 100) or None (no
            restarts): training steps without use after which a code is
            re-seeded.
        usage_window: positive integer (default 100), the window (in
            training steps) of `codebook_usage`.
        l2_normalize: bool (default False), compare l2-normalised vectors.
        codebook_initializer: initializer of the `(K, D)` codebook, or None
            (default): uniform in +-sqrt(3 / D) (expected code norm 1),
            seeded by `seed`.
        seed: int or None, seed of the initial codebook, the restarts and
            the k-means seeds.

    Call arguments:
        inputs: features `(batch, ..., D)` (any float dtype).
        training: Python bool; losses and codebook updates only when true.

    Input shape:
        `(batch, ..., D)`.

    Output shape:
        `(batch, ..., D)`, float32 (float64 for a float64 layer).

    Example:

    ```python
    h = keras.layers.Dense(16)(x)
    z_q = keras_vae.VectorQuantizer(num_codes=512)(h)
    x_hat = keras.layers.Dense(784)(z_q)
    ```

    References: van den Oord et al., "Neural Discrete Representation
    Learning", 2017; Razavi et al., "Generating Diverse High-Fidelity Images
    with VQ-VAE-2", 2019; Yu et al., "Vector-quantized Image Modeling with
    Improved VQGAN", 2021.
    """

    def __init__(self, num_codes, commitment_cost=0.25, ema_decay=0.99,
                 epsilon=1e-5, kmeans_init=False, kmeans_iters=10,
                 restart_after_steps=100, usage_window=100,
                 l2_normalize=False, codebook_initializer=None, seed=None,
                 **kwargs):
        # Distances in float32 under mixed precision: no input autocast.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.num_codes = cb.check_num_codes(num_codes)
        self.commitment_cost = v.check_float(
            "commitment_cost", commitment_cost, minimum=0.0)
        self.ema_decay = v.check_float(
            "ema_decay", ema_decay, minimum=0.0, allow_none=True)
        if self.ema_decay is not None and self.ema_decay >= 1.0:
            raise v.invalid("ema_decay", "a float in [0, 1) or None",
                            ema_decay)
        self.epsilon = v.check_float("epsilon", epsilon, minimum=0.0,
                                     strict=True)
        self.kmeans_init = v.check_bool("kmeans_init", kmeans_init)
        self.kmeans_iters = v.check_positive_int("kmeans_iters", kmeans_iters)
        self.restart_after_steps = cb.check_optional_positive_int(
            "restart_after_steps", restart_after_steps)
        self.usage_window = v.check_positive_int("usage_window", usage_window)
        self.l2_normalize = v.check_bool("l2_normalize", l2_normalize)
        self.seed = v.check_seed("seed", seed)
        self.codebook_initializer = (
            None if codebook_initializer is None
            else keras.initializers.get(codebook_initializer))
        # Draws the restarts' and k-means' feature vectors.
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.code_dim = None

    # -------------------------------------------------------------- build
    def build(self, input_shape):
        self.code_dim = cb.check_feature_axis(input_shape, None, self.name)
        dtype = cb.float_dtype(self)
        init = self.codebook_initializer or keras.initializers.RandomUniform(
            -math.sqrt(3.0 / self.code_dim), math.sqrt(3.0 / self.code_dim),
            seed=self.seed)
        shape = (self.num_codes, self.code_dim)
        self.codebook = self.add_weight(
            shape=shape, initializer=init, dtype=dtype, autocast=False,
            trainable=self.ema_decay is None, name="codebook")
        if self.ema_decay is not None:
            # Start consistent: codebook = ema_sum / ema_count.
            self.ema_count = self.add_weight(
                shape=(self.num_codes,), initializer="ones", dtype=dtype,
                autocast=False, trainable=False, name="ema_count")
            self.ema_sum = self.add_weight(
                shape=shape, dtype=dtype, autocast=False, trainable=False,
                initializer=lambda shape, dtype=None: tf.identity(
                    tf.convert_to_tensor(self.codebook)),
                name="ema_sum")
        if self.kmeans_init:
            self.kmeans_done = self.add_weight(
                shape=(), initializer="zeros", dtype="int32",
                trainable=False, name="kmeans_done")
        if self.restart_after_steps is not None:
            self.idle_steps = self.add_weight(
                shape=(self.num_codes,), initializer="zeros", dtype="int32",
                trainable=False, name="idle_steps")
        self._build_usage(self.num_codes)

    # ------------------------------------------------------------- lookup
    def _features(self, inputs):
        """(flat features (N, D) as compared, input shape tensor)."""
        inputs = tf.convert_to_tensor(inputs)
        cb.check_feature_axis(inputs.shape, self.code_dim, self.name)
        z = tf.reshape(tf.cast(inputs, cb.float_dtype(self)),
                       [-1, self.code_dim])
        if self.l2_normalize:
            z = tf.math.l2_normalize(z, axis=-1)
        return z, tf.shape(inputs)

    def _codes_in_use(self, raw=None):
        raw = tf.convert_to_tensor(self.codebook) if raw is None else raw
        return tf.math.l2_normalize(raw, axis=-1) if self.l2_normalize else raw

    def _check_built(self):
        if not self.built:
            raise ValueError(
                f"{self.name}: call the layer on features once (to build "
                "its codebook) before codes(), lookup() or distances().")

    def distances(self, inputs):
        """Squared distances to every code, `(batch, ..., K)`, float32."""
        self._check_built()
        z, shape = self._features(inputs)
        d = cb.squared_distances(z, self._codes_in_use())
        return tf.reshape(d, tf.concat([shape[:-1], [self.num_codes]], 0))

    def codes(self, inputs):
        """The nearest code of each position: int32 `(batch, ...)`."""
        self._check_built()
        z, shape = self._features(inputs)
        return tf.reshape(cb.nearest(z, self._codes_in_use()), shape[:-1])

    def lookup(self, codes):
        """Code vectors `(batch, ..., D)` of integer `codes` `(batch, ...)`.

        Codes outside [0, num_codes) raise a `ValueError` eagerly and fail a
        `tf.debugging` assertion in a graph.
        """
        self._check_built()
        codes = cb.check_codes(codes, self.num_codes)
        return tf.gather(self._codes_in_use(), codes)

    @property
    def log_num_codes(self):
        """log(num_codes): the uniform prior's -log p(code) per position."""
        return math.log(self.num_codes)

    # ------------------------------------------------------------ training
    def _random_rows(self, z):
        return cb.random_rows(z, self.num_codes, self.seed_generator)

    def _train_step(self, z, raw):
        """Codebook updates of one training call; returns the raw codebook
        this call quantises with (after a k-means initialisation)."""
        fresh = None
        if self.kmeans_init:
            fresh = tf.equal(self.kmeans_done, 0)
            raw = tf.cond(fresh, lambda: cb.kmeans(
                z, self._random_rows(z), self.kmeans_iters), lambda: raw)
            self.kmeans_done.assign(1)
        idx = cb.nearest(z, self._codes_in_use(raw))
        counts, sums = cb.cluster_stats(z, idx, self.num_codes)
        self._update_usage(counts)
        new = raw
        if self.ema_decay is not None:
            g = self.ema_decay
            count = tf.convert_to_tensor(self.ema_count)
            total = tf.convert_to_tensor(self.ema_sum)
            if fresh is not None:
                count = tf.where(fresh, tf.ones_like(count), count)
                total = tf.where(fresh, raw, total)
            count = g * count + (1.0 - g) * counts
            total = g * total + (1.0 - g) * sums
            n = tf.reduce_sum(count)
            smoothed = (count + self.epsilon) / (
                n + self.num_codes * self.epsilon) * n
            new = total / smoothed[:, None]
        if self.restart_after_steps is not None:
            idle = tf.where(counts > 0, 0, self.idle_steps + 1)
            dead = idle >= self.restart_after_steps
            seeds = self._random_rows(z)
            new = tf.where(dead[:, None], seeds, new)
            self.idle_steps.assign(tf.where(dead, 0, idle))
            if self.ema_decay is not None:
                count = tf.where(dead, tf.ones_like(count), count)
                total = tf.where(dead[:, None], seeds, total)
        if self.ema_decay is not None:
            self.ema_count.assign(count)
            self.ema_sum.assign(total)
        if (self.ema_decay is not None or self.kmeans_init
                or self.restart_after_steps is not None):
            self.codebook.assign(new)
        return raw, idx

    def call(self, inputs, training=None):
        outputs, losses = self.quantize_with_losses(inputs, training=training)
        for loss in losses:
            self.add_loss(loss)
        return outputs

    def quantize_with_losses(self, inputs, training=False):
        """`(outputs, losses)`: what `call` returns and the list of the
        losses it adds (commitment, and the codebook loss without EMA; none
        at inference), with the same statistics updates, but without
        `add_loss`. For callers that need one call's losses for
        themselves: a layer's loss list is shared by the replicas of a
        `tf.distribute` strategy, which trace their calls in threads
        (`VAEModel` reads the losses through this)."""
        z, shape = self._features(inputs)
        raw = tf.convert_to_tensor(self.codebook)
        if training:
            raw, idx = self._train_step(z, raw)
        else:
            idx = cb.nearest(z, self._codes_in_use(raw))
        z_q = tf.gather(self._codes_in_use(raw), idx)
        losses = []
        if training:
            losses.append(self.commitment_cost * tf.reduce_mean(
                tf.square(z - tf.stop_gradient(z_q))))
            if self.ema_decay is None:
                losses.append(tf.reduce_mean(
                    tf.square(tf.stop_gradient(z) - z_q)))
        # Straight-through: exactly z_q in value (z - sg(z) is 0), gradient
        # the identity on z.
        return tf.reshape(z_q + (z - tf.stop_gradient(z)), shape), losses

    def _feature_size(self):
        return self.code_dim

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_codes": self.num_codes,
            "commitment_cost": self.commitment_cost,
            "ema_decay": self.ema_decay,
            "epsilon": self.epsilon,
            "kmeans_init": self.kmeans_init,
            "kmeans_iters": self.kmeans_iters,
            "restart_after_steps": self.restart_after_steps,
            "usage_window": self.usage_window,
            "l2_normalize": self.l2_normalize,
            "codebook_initializer": None if self.codebook_initializer is None
            else keras.initializers.serialize(self.codebook_initializer),
            "seed": self.seed,
        })
        return config
