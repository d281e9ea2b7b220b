"""A quantizer read as a latent level: deterministic posterior, uniform prior.

A vector-quantised latent (`VectorQuantizer`, `ResidualVectorQuantizer`,
`FiniteScalarQuantizer`, or any layer with the quantizer protocol below)
is a latent level on its own, with no `KLRegularizer` and no
`LatentSample`. In the variational view (van den Oord et al. 2017) its
posterior is one-hot on the code the encoder's output z_e snaps to and
its prior is uniform over the codes:

```none
q(k | x) = 1[k = k(z_e(x))]       log q = 0
p(k)     = 1 / K per position     log p = -log K · positions
KL(q ‖ p) = log K · positions     (a constant: the ELBO counts log K per position)
ELBO(x)  = log p(x | z_q) - log K · positions
```

where "positions" are the quantised vectors of one example (every axis of
z_e but the batch and the last) and log K is the layer's `log_num_codes`
(Q log K for residual VQ, Σ log L_i for FSQ). The draw is the quantizer's
output z_q, the same for all K samples (objectives that need distinct
draws refuse it), with the straight-through gradient.

`graph.analyse` gives such a level a `QuantizedLatent` as its `sampler`
and a `UniformCodePrior` as its `kl`: the two objects answer what the
trace and the objectives ask of a `LatentSample` and a `KLRegularizer`.

The quantizer protocol (duck-typed, so a user's own quantizer is read
the same way): a Keras layer called once on the features z_e, with
`codes(z_e)` -> int32 codes, optionally `quantize_with_losses(z_e,
training)` -> `(output, losses)` (the call without `add_loss`), `lookup(codes)` -> the vectors it outputs,
`num_codes`, `log_num_codes` (per position), `usage_metrics(codes=None)`
-> `{"perplexity", "codebook_usage", ...}`; the codes of one position
have a trailing axis of size `num_quantizers` when the layer has that
attribute (residual VQ), else none.
"""

import tensorflow as tf


def is_quantizer(layer):
    """Whether `layer` follows the quantizer protocol (see the module doc)."""
    return all(callable(getattr(layer, name, None))
               for name in ("codes", "lookup", "usage_metrics")) and (
        hasattr(layer, "log_num_codes"))


def code_shape(quantizer, z_shape):
    """The shape of one example's codes (no batch axis) for a latent of
    shape `z_shape`: every axis but the features, plus the stage axis of a
    residual quantizer."""
    stages = getattr(quantizer, "num_quantizers", None)
    return tuple(z_shape[:-1]) + (() if stages is None else (int(stages),))


def positions(z_e):
    """Quantised vectors per example of features `(B, ..., D)`, as a
    float32 scalar (every axis but the batch and the features)."""
    return tf.cast(tf.reduce_prod(tf.shape(z_e)[1:-1]), tf.float32)


class QuantizedLatent:
    """The `sampler` of a quantized level: the `LatentSample` protocol
    over a quantizer layer (see the module doc and `LatentSample`).

    `num_params` is 1 (the features z_e); draws are the quantizer's output
    (identical for every sample; `reparameterized` through the
    straight-through gradient), and `family` is `"quantized"`.
    """

    num_params = 1
    family = "quantized"
    sampled_kl = False
    relaxed = False
    reparameterized = True

    def __init__(self, quantizer):
        self.quantizer = quantizer

    @property
    def name(self):
        return self.quantizer.name

    def split_inputs(self, inputs):
        flat = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        return flat[:1], flat[1:]

    def posterior(self, params):
        raise TypeError(
            f"The quantized latent '{self.name}' has a deterministic one-hot "
            "posterior (the nearest code), not a TFP distribution; its "
            "log q is 0 and its KL is log_num_codes per position."
        )

    def quantize(self, params, num_samples=1, training=True):
        """`(z, losses)`: the quantizer's output repeated `num_samples`
        times (sample-major) and the losses of this call (commitment,
        codebook; none at inference). Codebook statistics update here when
        training. Through the layer's `quantize_with_losses` (not
        `__call__` and its `add_loss`) when it has one: a layer's
        `add_loss` list is shared by the replicas of a `tf.distribute`
        strategy, which trace their steps in threads and wait for each
        other at the quantizer's all-reduce, so a replica reading the list
        saw the other replica's loss too (a test under MirroredStrategy
        found the reported loss counting both)."""
        quantize = getattr(self.quantizer, "quantize_with_losses", None)
        if quantize is not None:
            z, losses = quantize(params[0], training=training)
        else:
            z = self.quantizer(params[0], training=training)
            losses = list(self.quantizer.losses)
        if num_samples > 1:
            z = tf.tile(z, tf.concat(
                [[num_samples], tf.ones_like(tf.shape(z)[1:])], 0))
        return z, list(losses)

    def draw_latent(self, params, context=(), num_samples=1, seed=None,
                    training=True):
        """`(z, log_q)`: `quantize`'s z and log q = 0 per row (its losses
        are `quantize`'s to return)."""
        del context, seed
        z, _ = self.quantize(params, num_samples, training)
        return z, tf.zeros(tf.shape(z)[:1], tf.float32)

    def mode(self, params, context=()):
        """The quantised features (inference: no statistics updated)."""
        del context
        return self.quantizer(params[0], training=False)

    def kl(self, z_e):
        """KL(q ‖ p) = log K · positions, per row of `z_e` `(B,)`."""
        total = float(self.quantizer.log_num_codes) * positions(z_e)
        return tf.fill(tf.shape(z_e)[:1], total)


class UniformCodePrior:
    """The `kl` of a quantized level: what the objectives read of a
    `KLRegularizer` (β = 1, no free bits, no capacity), for the uniform
    prior over codes. Its penalty is the batch-mean KL, a constant that
    keeps the reported loss equal to -ELBO and adds no gradient."""

    kl_weight = 1.0
    free_bits = 0.0
    capacity = None
    kl_capacity = None
    prior = None
    has_prior_params = False
    adds_loss = False

    def __init__(self, quantizer):
        self.quantizer = quantizer

    @property
    def name(self):
        return self.quantizer.name

    def penalty(self, kl, per_dimension=None):
        del per_dimension
        return tf.reduce_mean(kl)

    def prior_distribution(self, *args, **kwargs):
        raise no_prior_error(self.name)


def no_prior_error(name):
    """The error of drawing a quantized level `name` from its prior."""
    return ValueError(
        f"The latent '{name}' is vector-quantised: its prior is uniform "
        "over the codes, and a uniform draw of codes is not a useful "
        "sample (a trained model uses its codes far from uniformly and in "
        "patterns a uniform draw ignores). To generate, fit a prior over "
        "codes (e.g. an autoregressive model on vae.encode_codes(x_train)), "
        "draw codes from it and decode them with vae.decode_codes(codes)."
    )
