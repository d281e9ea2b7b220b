"""IAFSample: a Gaussian posterior pushed through an inverse autoregressive flow."""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import _validation as v
from keras_vae.layers._made import MADE
from keras_vae.layers.latent_sample import LatentSample
from keras_vae.posteriors import (
    check_input_shape,
    check_loc_scale,
    gaussian_posterior,
    reparameterize,
)
from keras_vae.random import standard_normal

tfb = tfp.bijectors

INFERENCE_MODES = ("mean", "sample")
# Initial bias of the gate logit s (Kingma et al. 2016 suggest +1 or +2):
# sigmoid(5 tanh(2 / 5)) = 0.87, so every step starts as z_t ≈ 0.87 z_{t-1}.
GATE_BIAS = 2.0
# Bound S of the gate logit, s -> S tanh(s / S): each step scales each
# coordinate by sigmoid(s) in [0.0067, 0.9933], so its log-det term is
# bounded and the TFP shift below (|m| e^{-s} <= 148 |m|) stays finite.
MAX_GATE_LOGIT = 5.0


@keras.saving.register_keras_serializable(package="keras_vae")
class IAFSample(LatentSample):
    """Draws z ~ q(z | x): a Gaussian sample moved by an inverse autoregressive flow.

    ```none
    z_0 = loc + scale * eps,   eps ~ N(0, I)         (or loc + scale @ eps)
    for t = 1 .. T (the order of z is reversed between steps, and restored
    after the last one):
        m_t, s_t = MADE_t(z_{t-1}, context)         m_t[d], s_t[d] see z_{t-1}[< d] only
        sigma_t  = sigmoid(S tanh(s_t / S))          S = 5
        z_t      = sigma_t * z_{t-1} + (1 - sigma_t) * m_t
    log q(z_T | x) = log N(z_0; loc, scale) - log|det dz_T/dz_0|
                   = log N(z_0; loc, scale) - sum_t sum_d log sigma_t[d]
    ```

    Each step is one pass of a masked network (MADE, Germain et al. 2015),
    so sampling and its density cost T network evaluations; the Jacobian of
    a step is triangular, with diagonal sigma_t. The gated ("LSTM-type")
    update of Kingma et al. is a convex combination of z and m, with gate
    biases starting at +2 and small output weights, so the initial flow is
    nearly the contraction z_t = 0.87 z_{t-1}. The context (e.g. the
    encoder's features) enters every MADE's first hidden layer and its
    outputs, which makes the flow depend on x beyond `(loc, scale)`.

    Steps are TFP bijectors: `Invert(MaskedAutoregressiveFlow(...))` (its
    forward is the MAF inverse: one network pass, no `while_loop`, so it
    compiles with XLA) chained with `Permute`; `flow_bijector(context)`
    returns the chain. The networks are Keras 3 layers (see `_made.py`).

    Because log q(z | x) is not the density of N(loc, scale), the layer has
    `sampled_kl = True`: `VAEModel` estimates the KL at the drawn z with
    `log_q` from `draw_latent`. (In a plain Keras model, without
    `VAEModel`, the `KLRegularizer` before it can only add the KL of the
    base Gaussian N(loc, scale), not of the flow.)

    Args:
        num_flows: number of flow steps T.
        hidden_units: sizes of the hidden layers of each step's MADE. The
            output of coordinate d can depend on every earlier coordinate
            when each size is at least L - 1.
        seed: int or None, seed of the noise.
        inference: what the layer returns when `training` is false:
            `"mean"` (default; the flow applied to `loc`, deterministic) or
            `"sample"` (a draw, as in training).

    Call arguments:
        inputs: `[loc, scale]` or `[loc, scale, context]`.
        training: Python bool; draws when true.

    Input shape:
        loc `(batch, L)`; scale `(batch, L)` (diagonal) or `(batch, L, L)`
        (lower-triangular); optional context `(batch, H)`.

    Output shape:
        `(batch, L)`, float32.

    Example:

    ```python
    h = keras.layers.Dense(256, activation="relu")(x)
    loc, scale = keras_vae.GaussianEncoderHead(latent_dim=32)(h)
    z = keras_vae.IAFSample(num_flows=2, seed=0)([loc, scale, h])
    ```

    References: Kingma et al., "Improved Variational Inference with Inverse
    Autoregressive Flow", 2016; Germain et al., "MADE: Masked Autoencoder
    for Distribution Estimation", 2015.
    """

    num_params = 2
    family = "flow"
    sampled_kl = True

    def __init__(self, num_flows=2, hidden_units=(64,), seed=None,
                 inference="mean", **kwargs):
        # Keep the float32 (loc, scale) float32 under mixed precision; the
        # MADEs are float32 layers too.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.num_flows = v.check_positive_int("num_flows", num_flows)
        self.hidden_units = _check_hidden_units("hidden_units", hidden_units)
        self.seed = v.check_seed("seed", seed)
        self.inference = v.check_choice("inference", inference, INFERENCE_MODES)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        shapes = list(input_shape) if _is_shape_list(input_shape) else []
        if len(shapes) not in (2, 3):
            raise ValueError(
                "IAFSample expects `[loc, scale]` or `[loc, scale, context]`. "
                f"Received: input_shape={input_shape}"
            )
        latent_dim = check_input_shape(shapes[:2], "IAFSample")
        if len(shapes[0]) != 2:
            raise ValueError(
                "IAFSample needs a flat latent: loc of shape (batch, L). Use "
                "GaussianEncoderHead(flatten=True) before it. Received: "
                f"loc.shape={tuple(shapes[0])}"
            )
        if latent_dim is None:
            raise ValueError(
                "IAFSample needs the latent size L (last axis of loc) to be "
                f"known. Received: input_shape={input_shape}"
            )
        context_shape = tuple(shapes[2]) if len(shapes) == 3 else None
        if context_shape is not None and (
            len(context_shape) != 2 or context_shape[-1] is None
        ):
            raise ValueError(
                "IAFSample expects a context of shape (batch, H) with H "
                f"known. Received: context.shape={context_shape}"
            )
        self.latent_dim = int(latent_dim)
        self.context_dim = None if context_shape is None else context_shape[-1]
        self.mades = []
        for i in range(self.num_flows):
            made = MADE(self.hidden_units, gate_bias=GATE_BIAS,
                        dtype="float32", name=f"made_{i}")
            made.build((None, self.latent_dim), context_shape)
            self.mades.append(made)

    def flow_bijector(self, context=()):
        """The TFP bijector z_0 -> z_T for a batch of context rows.

        `context` is `()` or `(context,)` with context of shape (N, H); the
        bijector then acts on z_0 of shape (N, L). Its `forward` and
        `forward_log_det_jacobian(z, event_ndims=1)` are one network pass
        per step; its `inverse` (MAF's forward) is a `while_loop` over the L
        coordinates, for analysis only.
        """
        context = self._context(context)
        reverse = np.arange(self.latent_dim - 1, -1, -1, dtype=np.int32)
        steps = []  # in the order they apply
        for t, made in enumerate(self.mades):
            if t:
                steps.append(tfb.Permute(reverse, name=f"reverse_{t}"))
            steps.append(tfb.Invert(tfb.MaskedAutoregressiveFlow(
                shift_and_log_scale_fn=_gated_step(made, context),
                name=f"iaf_{t}",
            )))
        if (self.num_flows - 1) % 2:
            # Back to the input order (reversing is volume preserving), so
            # z_T[d] and loc[d] name the same coordinate: the initial flow
            # is ≈ 0.87^T z_0, not a shuffle of it.
            steps.append(tfb.Permute(reverse, name="reverse_out"))
        return tfb.Chain(steps[::-1], name="iaf")

    def draw_latent(self, params, context=(), num_samples=1, seed=None,
                    training=True):
        """`LatentSample` protocol: K flowed draws and their log q(z | x).

        Returns z of shape `(num_samples * B, L)`, sample-major, and
        log q(z | x) of shape `(num_samples * B,)`, both float32. With
        `seed` (an int tensor of shape (2,)) the draw is a fixed function of
        it and the layer's noise state is left alone.
        """
        self._build_for(params, context)
        loc, scale = params
        z0, log_q0 = self._base_draw(loc, scale, num_samples, seed)
        flow = self.flow_bijector(_repeat(context, num_samples))
        z = flow.forward(z0)
        log_det = flow.forward_log_det_jacobian(z0, event_ndims=1)
        return z, log_q0 - log_det

    def mode(self, params, context=()):
        """The flow applied to `loc`: (B, L) float32."""
        self._build_for(params, context)
        loc = tf.cast(params[0], tf.float32)
        return self.flow_bijector(context).forward(loc)

    def call(self, inputs, training=None):
        params, context = self.split_inputs(inputs)
        loc, scale = params
        check_loc_scale(loc, scale, "IAFSample")  # also once built
        if training or self.inference == "sample":
            z0, _ = self._base_draw(loc, scale, 1, None, log_prob=False)
            return self.flow_bijector(context).forward(z0)
        return self.mode(params, context)

    def _base_draw(self, loc, scale, num_samples, seed, log_prob=True):
        """z_0 (K*B, L) and log N(z_0; loc, scale) (K*B,), sample-major."""
        loc = tf.cast(loc, tf.float32)
        scale = tf.cast(scale, tf.float32)
        shape = tf.concat([[num_samples], tf.shape(loc)], axis=0)
        eps = standard_normal(shape, self.seed_generator, seed=seed)
        z0 = reparameterize(loc, scale, eps)  # (K, B, L)
        log_q0 = None
        if log_prob:
            log_q0 = tf.reshape(gaussian_posterior(loc, scale).log_prob(z0),
                                (-1,))
        return tf.reshape(z0, (-1, self.latent_dim)), log_q0

    def _context(self, context):
        """The context tensor (float32) or None, checked against `build`."""
        context = list(context)
        if len(context) > 1:
            raise ValueError(
                "IAFSample takes at most one context tensor. Received "
                f"{len(context)}."
            )
        has_context = bool(context)
        if has_context != (self.context_dim is not None):
            raise ValueError(
                "IAFSample was built "
                f"{'with' if self.context_dim is not None else 'without'} a "
                "context input and must be called the same way. Received "
                f"{len(context)} context tensors."
            )
        return tf.cast(context[0], tf.float32) if has_context else None

    def _build_for(self, params, context):
        if not self.built:
            self.build([tuple(t.shape) for t in list(params) + list(context)])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def compute_output_spec(self, inputs, training=None):
        params, _ = self.split_inputs(inputs)
        return keras.KerasTensor(tuple(params[0].shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_flows": self.num_flows,
            "hidden_units": list(self.hidden_units),
            "seed": self.seed,
            "inference": self.inference,
        })
        return config


def _gated_step(made, context):
    """`shift_and_log_scale_fn` of one step: the gated IAF update in MAF form.

    `Invert(MAF).forward(z) = (z - shift) * exp(-log_scale)`; with
    `log_scale = -log sigma` and `shift = -m e^{-s}` that is
    `sigma z + (1 - sigma) m`, since `sigma e^{-s} = 1 - sigma`.

    TFP calls this once for `forward` and again, on the same tensor (its
    bijector cache hands the chain's intermediate z back by identity), for
    `forward_log_det_jacobian`; the last result is kept so each MADE runs
    once per step outside XLA too (XLA would merge the copies anyway).
    """
    last = {}

    def shift_and_log_scale(z):
        if last.get("z") is not z:
            m, s = made(z, context)
            s = MAX_GATE_LOGIT * tf.tanh(s / MAX_GATE_LOGIT)
            # softplus(-s) = -log sigmoid(s), without underflow.
            last.update(z=z, out=(-m * tf.exp(-s), tf.nn.softplus(-s)))
        return last["out"]

    return shift_and_log_scale


def _repeat(context, num_samples):
    """Context rows repeated `num_samples` times, sample-major like z."""
    return [tf.tile(c, [num_samples, 1]) for c in context]


def _is_shape_list(input_shape):
    return isinstance(input_shape, (list, tuple)) and all(
        isinstance(s, (list, tuple, tf.TensorShape)) for s in input_shape
    )


def _check_hidden_units(name, value):
    """A non-empty list or tuple of positive ints, as a tuple."""
    expected = "a non-empty list or tuple of positive integers"
    if not isinstance(value, (list, tuple)) or not value:
        raise v.invalid(name, expected, value)
    try:
        return tuple(v.check_positive_int(name, u) for u in value)
    except ValueError:
        raise v.invalid(name, expected, value) from None
