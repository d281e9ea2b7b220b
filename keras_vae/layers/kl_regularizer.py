"""KLRegularizer: adds KL(q(z|x) || p(z)) to the model's losses."""

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae import priors as priors_lib
from keras_vae.layers._seed_state import SavesSeedState
from keras_vae.objectives.kl import kl_divergence, kl_per_dimension
from keras_vae.posteriors import (
    check_input_shape,
    check_loc_scale,
    gaussian_posterior,
    reparameterize,
)
from keras_vae.random import standard_normal


@keras.saving.register_keras_serializable(package="keras_vae")
class KLRegularizer(SavesSeedState, keras.layers.Layer):
    """Identity on `(loc, scale)` that adds β · KL(q(z|x) ‖ p(z)) as a loss.

    ```none
    KL_b     = KL(q(z | x_b) || p(z))                  analytic if TFP has it
    penalty  = weight * mean_b KL_b                    (free_bits = 0)
    penalty  = weight * sum_d max(mean_b KL_bd, free_bits)   (diagonal q, factorised p)
    penalty  = weight * | mean_b KL_b - capacity |    (capacity annealing)
    ```

    The KL is analytic (`tfd.kl_divergence`) when TFP registers one for the
    posterior/prior pair, otherwise a one-sample estimate log q(z) - log p(z)
    (`VAEModel` passes the z it actually drew, so the estimate is the usual
    Monte Carlo ELBO term). The penalty is added with `add_loss`, so the
    layer works in any Keras model; `VAEModel` asks the layer for the same
    quantities directly (`kl_divergence`, `penalty`) to report the `kl`
    metric and compute the ELBO.

    `weight` is stored in a non-trainable variable (`kl_weight`) that the
    compiled train step reads, so a callback can anneal it after `compile`
    (KL warm-up) by `layer.kl_weight.assign(...)`.

    Args:
        prior: a `keras_vae.priors.Prior` or `"standard_normal"` (default).
        weight: float >= 0, the β of β-VAE (1.0 gives the ELBO).
        free_bits: float >= 0, nats per latent dimension below which the
            KL is not penalised (Kingma et al., 2016), applied to the
            batch-mean KL of each dimension. For a full-covariance posterior
            (whose KL does not split by dimension) the floor is applied to
            the total, as `latent_dim * free_bits`. Default 0 (off).
        capacity: None (default) or a float >= 0 in nats: penalise
            `|KL - capacity|` instead of the KL (Burgess et al., 2018),
            with `weight` as γ. Stored in the variable `kl_capacity`, which
            `keras_vae.callbacks.CapacityAnnealing` raises during training.
        seed: int or None, seed of the draw used when the KL is a sampled
            estimate (no closed form for the prior).

    Call arguments:
        inputs: `(loc, scale)`, as returned by `GaussianEncoderHead`.

    Input shape / Output shape:
        `((batch, L), (batch, L))` or `((batch, L), (batch, L, L))`,
        returned unchanged.

    Example:

    ```python
    q = keras_vae.GaussianEncoderHead(latent_dim=16)(h)
    q = keras_vae.KLRegularizer(weight=4.0)(q)      # a β-VAE with β = 4
    z = keras_vae.ReparameterizedSample()(q)
    ```

    References: Kingma & Welling 2013; Higgins et al. 2017 (β-VAE);
    Kingma et al. 2016 (free bits); Burgess et al. 2018 (capacity).
    """

    def __init__(self, prior="standard_normal", weight=1.0, free_bits=0.0,
                 capacity=None, seed=None, **kwargs):
        # Keep the float32 (loc, scale) of the head float32 under mixed
        # precision: no autocast of the inputs to the compute dtype.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.prior = priors_lib.get(prior)
        self.weight = v.check_float("weight", weight, minimum=0.0)
        self.free_bits = v.check_float("free_bits", free_bits, minimum=0.0)
        self.capacity = v.check_float(
            "capacity", capacity, minimum=0.0, allow_none=True
        )
        if self.capacity is not None and self.free_bits > 0.0:
            raise ValueError(
                "KLRegularizer takes `free_bits` or `capacity`, not both. "
                f"Received: free_bits={free_bits}, capacity={capacity}"
            )
        self.seed = v.check_seed("seed", seed)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.kl_weight = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.weight),
            trainable=False, name="kl_weight", dtype="float32",
        )
        self.kl_capacity = None
        if self.capacity is not None:
            self.kl_capacity = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(self.capacity),
                trainable=False, name="kl_capacity", dtype="float32",
            )

    def build(self, input_shape):
        self.latent_dim = check_input_shape(input_shape, "KLRegularizer")
        if not self.prior.built:
            self.prior.build((None, self.latent_dim))

    # ------------------------------------------------------------ queries
    def prior_distribution(self):
        return self.prior.distribution(self.latent_dim)

    def kl_divergence(self, loc, scale, z=None):
        """Per-example KL(q ‖ p), shape (B,), float32, without the weight."""
        return kl_divergence(
            gaussian_posterior(loc, scale), self.prior_distribution(), z
        )

    def penalty(self, loc, scale, z=None, kl=None):
        """The scalar added to the loss: weight · (free-bits) batch-mean KL.

        `z`: samples for the sampled estimate (or a function drawing them),
        used only when the KL has no closed form. `kl`: the per-example KL
        when the caller has it already (not used with free bits, which need
        it per dimension).
        """
        q = gaussian_posterior(loc, scale)
        p = self.prior_distribution()
        if self.free_bits > 0.0:
            per_dim = kl_per_dimension(q, p)
            if per_dim is not None:
                total = tf.reduce_sum(
                    tf.maximum(tf.reduce_mean(per_dim, 0), self.free_bits)
                )
            else:
                total = tf.maximum(
                    tf.reduce_mean(kl_divergence(q, p, z)),
                    self.free_bits * self.latent_dim,
                )
        else:
            if kl is None:
                kl = kl_divergence(q, p, z)
            total = tf.reduce_mean(kl)
            if self.kl_capacity is not None:
                total = tf.abs(total - self.kl_capacity)
        return self.kl_weight * total

    def call(self, inputs):
        loc, scale = inputs
        check_loc_scale(loc, scale, "KLRegularizer")  # also once built

        def draw():  # only called when the KL has no closed form
            eps = standard_normal(tf.shape(loc), self.seed_generator)
            return reparameterize(loc, scale, eps)

        self.add_loss(self.penalty(loc, scale, draw))
        return loc, scale

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0]), tuple(input_shape[1])

    def compute_output_spec(self, inputs):
        return tuple(
            keras.KerasTensor(tuple(t.shape), dtype=t.dtype) for t in inputs
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "prior": keras.saving.serialize_keras_object(self.prior),
                "weight": self.weight,
                "free_bits": self.free_bits,
                "capacity": self.capacity,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["prior"] = priors_lib.get(config.get("prior"))
        return cls(**config)

