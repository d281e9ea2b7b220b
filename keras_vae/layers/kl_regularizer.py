"""KLRegularizer: adds KL(q(z|x) || p(z)) to the model's losses."""

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae import priors as priors_lib
from keras_vae.seed_state import SavesSeedState
from keras_vae.kl import kl_divergence, kl_per_dimension
from keras_vae.posteriors import (
    check_input_shape,
    check_loc_scale,
    posterior_distribution,
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
    Monte Carlo ELBO term; the mixture priors, `MixtureOfGaussians` and
    `VampPrior`, and flow posteriors, `IAFSample`, are estimated so).

    Three forms of input:

    ```none
    (loc, scale)                        Gaussian q; prior `prior` (default N(0, I))
    logits (B, N, C)                    categorical q; prior `prior` (default uniform)
    [(loc, scale), (p_loc, p_scale)]    Gaussian q; prior N(p_loc, p_scale p_scale^T) per
                                        example, computed by the model (the
                                        p(z1 | z2) of a hierarchical VAE, or a
                                        conditional prior p(z | y))
    ```

    The output is the posterior part of the input, unchanged. In a plain
    Keras model the penalty is added with `add_loss`. Inside a `VAEModel`
    the layer is a marker (`adds_loss` is set False): it computes and draws
    nothing when called, and the model's objective asks it for the same
    quantities (`prior_distribution`, `penalty`) on the trace.

    The latent may have any shape: `(batch, L)`, or `(batch, h, w, C)` from
    `GaussianEncoderHead(flatten=False)`; the KL is summed over every axis
    after the batch axis.

    `weight` is stored in a non-trainable variable (`kl_weight`) that the
    compiled train step reads, so a callback can anneal it after `compile`
    (KL warm-up) by `layer.kl_weight.assign(...)`.

    Args:
        prior: a `keras_vae.priors.Prior`, `"standard_normal"`, or None
            (default): N(0, I) for a Gaussian posterior, the uniform
            categorical for logits. Must be None when the model passes the
            prior's parameters as the second input.
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
        inputs: `(loc, scale)` from `GaussianEncoderHead`, logits from
            `GumbelSoftmaxHead`, or `[(loc, scale), (prior_loc,
            prior_scale)]`.

    Input shape / Output shape:
        `((batch, L), (batch, L))`, `((batch, L), (batch, L, L))` or
        `(batch, N, C)`; with prior parameters `[posterior, ((batch, L),
        (batch, L))]`. The output is the posterior, unchanged.

    Example:

    ```python
    q = keras_vae.GaussianEncoderHead(latent_dim=16)(h)
    q = keras_vae.KLRegularizer(weight=4.0)(q)      # a β-VAE with β = 4
    z = keras_vae.ReparameterizedSample()(q)

    # A prior computed by the model: p(z1 | z2) in a two-level VAE.
    p1 = keras_vae.GaussianEncoderHead(latent_dim=16)(dense(z2))
    q1 = keras_vae.KLRegularizer()([q1, p1])
    ```

    References: Kingma & Welling 2013; Higgins et al. 2017 (β-VAE);
    Kingma et al. 2016 (free bits); Burgess et al. 2018 (capacity).
    """

    def __init__(self, prior=None, weight=1.0, free_bits=0.0,
                 capacity=None, seed=None, **kwargs):
        # Keep the float32 (loc, scale) of the head float32 under mixed
        # precision: no autocast of the inputs to the compute dtype.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.prior = None if prior is None else priors_lib.get(prior)
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
        self.has_prior_params = False
        # True in a plain Keras model; a VAEModel sets it False for the
        # layers it reads: its objective computes the KL from the trace.
        self.adds_loss = True

    def build(self, input_shape):
        posterior, prior_params = _split(input_shape, is_shape=True)
        self.has_prior_params = prior_params is not None
        if len(posterior) == 1:  # logits (B, N, C)
            shape = tuple(posterior[0])
            if len(shape) != 3:
                raise ValueError(
                    "KLRegularizer expects `(loc, scale)` or categorical "
                    "logits of shape (batch, num_variables, num_classes). "
                    f"Received: input_shape={input_shape}"
                )
            self.latent_dim = shape[1]
            self.event_shape = shape[1:]
            default = priors_lib.UniformCategorical
        else:
            self.latent_dim = check_input_shape(posterior, "KLRegularizer")
            shape = tuple(posterior[0])
            self.event_shape = shape[1:]
            default = priors_lib.StandardNormal
        if prior_params is not None:
            if self.prior is not None:
                raise ValueError(
                    "KLRegularizer received prior parameters as its second "
                    "input and also `prior`: give one. Received: "
                    f"prior={self.prior!r}"
                )
            if len(posterior) != 2 or len(prior_params) != 2:
                raise ValueError(
                    "Prior parameters computed by the model must be a "
                    "Gaussian's `(loc, scale)` (diagonal or lower-triangular "
                    "scale), with a Gaussian "
                    "posterior: `KLRegularizer()([(loc, scale), (prior_loc, "
                    f"prior_scale)])`. Received: input_shape={input_shape}"
                )
            check_input_shape(prior_params, "KLRegularizer (prior params)")
            if tuple(prior_params[0])[1:] != self.event_shape:
                raise ValueError(
                    "The prior parameters must have the posterior's latent "
                    f"shape {self.event_shape}. Received: input_shape="
                    f"{input_shape}"
                )
        elif self.prior is None:
            self.prior = default()
        if self.prior is not None:
            self.prior.check_event_shape(
                self.event_shape, f"KLRegularizer '{self.name}'"
            )
        if self.prior is not None and not self.prior.built:
            if self.prior.needs_encoder:
                return  # VampPrior: built by VAEModel, which has the encoder
            self.prior.build(shape)

    def event_shape_of(self, params):
        """The shape of one z for posterior parameters `params`: the static
        tuple when every axis is known, else the run-time int tensor."""
        if all(d is not None for d in self.event_shape):
            return tuple(self.event_shape)
        return tf.shape(params[0])[1:]

    # ------------------------------------------------------------ queries
    def prior_distribution(self, prior_params=None, event_shape=None):
        """p(z): the `prior`'s distribution, or the Gaussian N(p_loc, p_scale²)
        of prior parameters computed by the model (batch (B,)).

        `event_shape`: the shape of one z (a tuple, or an int tensor from
        `event_shape_of(params)`); needed only when the layer was built
        with axes of unknown size (a spatial latent of any image size).
        """
        if prior_params is not None:
            p_loc, p_scale = prior_params
            return posterior_distribution([p_loc, p_scale])
        if self.has_prior_params:
            raise ValueError(
                f"KLRegularizer '{self.name}' takes its prior's parameters "
                "from the model: pass them as `prior_params`."
            )
        if event_shape is None:
            if any(d is None for d in self.event_shape):
                raise ValueError(
                    f"KLRegularizer '{self.name}' has a latent of shape "
                    f"(batch, *{self.event_shape}), whose size is known only "
                    "at run time: pass `event_shape`."
                )
            event_shape = self.event_shape
        if isinstance(event_shape, tuple) and len(event_shape) == 1:
            event_shape = int(event_shape[0])  # a flat latent: L, as ever
        return self.prior.distribution(event_shape)

    def kl_divergence(self, params, prior_params=None, z=None, log_q=None):
        """Per-example KL(q ‖ p), shape (B,), float32, without the weight.

        Args:
            params: posterior parameters (`[loc, scale]` or `[logits]`).
            prior_params: `[prior_loc, prior_scale]` for a prior computed by
                the model, else None.
            z: samples (..., B, L) for the sampled estimate, or a function
                drawing them; used only without a closed form.
            log_q: log q(z) when q is a flow (then always sampled).
        """
        return kl_divergence(
            posterior_distribution(params),
            self.prior_distribution(prior_params, self.event_shape_of(params)),
            z, log_q,
        )

    def kl_per_dimension(self, params, prior_params=None):
        """Per-example, per-dimension KL (B, L), or None if it does not split."""
        return kl_per_dimension(
            posterior_distribution(params),
            self.prior_distribution(prior_params, self.event_shape_of(params)),
        )

    def penalty(self, kl, per_dimension=None):
        """The scalar added to the loss, from the per-example KL (B,).

        ```none
        weight * mean_b kl_b                               default
        weight * sum_d max(mean_b kl_bd, free_bits)        free bits, KL per dimension known
        weight * max(mean_b kl_b, L * free_bits)           free bits, otherwise
        weight * |mean_b kl_b - capacity|                  capacity
        ```
        """
        if self.free_bits > 0.0:
            if per_dimension is not None:  # (B, *event): every latent axis
                total = tf.reduce_sum(
                    tf.maximum(
                        tf.reduce_mean(per_dimension, 0), self.free_bits
                    )
                )
            else:
                total = tf.maximum(
                    tf.reduce_mean(kl), self.free_bits * self.latent_dim
                )
        else:
            total = tf.reduce_mean(kl)
            if self.kl_capacity is not None:
                total = tf.abs(total - self.kl_capacity)
        return self.kl_weight * total

    def call(self, inputs):
        posterior, prior_params = _split(inputs)
        if len(posterior) == 2:
            check_loc_scale(*posterior, "KLRegularizer")  # also once built
        if prior_params is not None:
            check_loc_scale(*prior_params, "KLRegularizer (prior params)")
        out = posterior[0] if len(posterior) == 1 else tuple(posterior)
        if not self.adds_loss:
            return out  # a marker: the VAEModel's objective has the KL
        q = posterior_distribution(posterior)

        def draw():  # only called when the KL has no closed form
            if len(posterior) == 2:  # the XLA-stable noise of the sampler
                eps = standard_normal(
                    tf.shape(posterior[0]), self.seed_generator
                )
                return reparameterize(*posterior, eps)
            return q.sample(
                seed=tf.cast(self.seed_generator.next(), tf.int32)
            )

        kl = self.kl_divergence(posterior, prior_params, draw)
        per_dim = None
        if self.free_bits > 0.0:
            per_dim = self.kl_per_dimension(posterior, prior_params)
        self.add_loss(self.penalty(kl, per_dim))
        return out

    def compute_output_shape(self, input_shape):
        posterior, _ = _split(input_shape, is_shape=True)
        if len(posterior) == 1:
            return tuple(posterior[0])
        return tuple(tuple(s) for s in posterior)

    def compute_output_spec(self, inputs):
        posterior, _ = _split(inputs)
        specs = [
            keras.KerasTensor(tuple(t.shape), dtype=t.dtype) for t in posterior
        ]
        return specs[0] if len(specs) == 1 else tuple(specs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "prior": None if self.prior is None or self.has_prior_params
                else keras.saving.serialize_keras_object(self.prior),
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
        if config.get("prior") is not None:
            config["prior"] = priors_lib.get(config["prior"])
        return cls(**config)


def _is_leaf(x, is_shape):
    if is_shape:  # a shape is a tuple/list of ints and Nones
        return isinstance(x, (list, tuple)) and all(
            d is None or isinstance(d, int) for d in x
        )
    return not isinstance(x, (list, tuple))


def _split(inputs, is_shape=False):
    """`(posterior list, prior-params list or None)` of the call inputs."""
    if _is_leaf(inputs, is_shape):
        return [inputs], None
    items = list(inputs)
    if len(items) == 2 and not (
        _is_leaf(items[0], is_shape) and _is_leaf(items[1], is_shape)
    ):
        posterior = items[0]
        prior = items[1]
        posterior = [posterior] if _is_leaf(posterior, is_shape) else list(posterior)
        prior = [prior] if _is_leaf(prior, is_shape) else list(prior)
        return posterior, prior
    return items, None
