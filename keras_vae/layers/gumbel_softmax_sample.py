"""GumbelSoftmaxSample: relaxed (training) or exact (evaluation) one-hot z."""

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.layers import _one_hot
from keras_vae.layers.latent_sample import LatentSample

INFERENCE_MODES = ("mode", "sample")


@keras.saving.register_keras_serializable(package="keras_vae")
class GumbelSoftmaxSample(LatentSample):
    """Draws N one-hot latents of C classes, relaxed while training.

    ```none
    u ~ U(0, 1)^(N x C),   g = -log(-log u)                     (Gumbel noise)
    training:    z = softmax((logits + g) / tau)        ~ RelaxedOneHotCategorical(tau, logits)
    evaluation:  z = one_hot(argmax(logits + g))        ~ OneHotCategorical(logits)   (exact)
    straight-through (training): z = one_hot(argmax(logits + g)) in the forward
                 pass, with the gradient of softmax((logits + g) / tau)
    ```

    While training, z is the Gumbel-softmax (Concrete) relaxation: a
    point of the simplex that is differentiable in the logits, so the
    Monte Carlo reconstruction term has reparameterisation gradients; as
    tau -> 0 it tends to the one-hot draw. At evaluation (`training=False`
    in `draw_latent`) z is a HARD one-hot draw (the Gumbel-max trick: exactly
    a draw of q(z | x) = prod_n OneHotCategorical(z_n; softmax(logits_n))),
    so the evaluated model is the discrete model, and
    `posterior(logits).log_prob(z)` (an `Independent(OneHotCategorical)`) is
    the exact log q(z | x). The importance-sampled log p(x) and the ELBO
    that `VAEModel` reports at evaluation are then estimates for the
    discrete latent model, not for its relaxation.

    `draw_latent` returns `log_q=None` in both cases (log q is
    `posterior(params).log_prob(z)`). While training this is exact only for
    the analytic KL (e.g. to `keras_vae.priors.UniformCategorical`), which
    does not look at z: at a relaxed z, `OneHotCategorical.log_prob` is the
    surrogate sum_nc z_nc log softmax(logits)_nc, not the Concrete density,
    so a training objective that uses log q(z) at the drawn z (IWAE, or a
    prior without analytic KL) optimises that surrogate.

    The temperature is kept in the non-trainable variable
    `temperature_variable`, which the compiled train step reads: a callback
    can anneal it after `compile` by `layer.temperature_variable.assign(t)`.
    The `temperature` argument (in the config) is its initial value; a saved
    model stores the current value with its weights.

    Args:
        temperature: float > 0, the relaxation temperature tau (default 0.5).
        seed: int or None, seed of the noise.
        inference: what `call` returns when `training` is false
            (`predict`, serving): `"mode"` (default; the one-hot argmax of
            the logits, deterministic) or `"sample"` (a hard one-hot draw).
        straight_through: bool (default False). If true, the training draw
            is the hard one-hot sample in the forward pass with the relaxed
            sample's gradient (Jang et al., 2016, "ST Gumbel-softmax"); a
            biased gradient, but the decoder never sees a relaxed z.

    Call arguments:
        inputs: logits of shape `(batch, N, C)` from `GumbelSoftmaxHead`
            (or a one-element list holding them).
        training: Python bool; relaxed draws when true.

    Input shape:
        `(batch, N, C)`.

    Output shape:
        `(batch, N, C)`, float32; rows on the simplex (one-hot unless
        training without `straight_through`).

    Example:

    ```python
    logits = keras_vae.GumbelSoftmaxHead(num_variables=20, num_classes=10)(h)
    z = keras_vae.GumbelSoftmaxSample(temperature=0.5, seed=0)(logits)
    h = keras.layers.Flatten()(z)
    ```

    References: Jang et al., "Categorical Reparameterization with
    Gumbel-Softmax", 2016; Maddison et al., "The Concrete Distribution: A
    Continuous Relaxation of Discrete Random Variables", 2016.
    """

    num_params = 1
    family = "relaxed_categorical"
    sampled_kl = False
    relaxed = True

    def __init__(self, temperature=0.5, seed=None, inference="mode",
                 straight_through=False, **kwargs):
        # Keep the float32 logits of the head float32 under mixed precision:
        # no autocast of the inputs to the compute dtype.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.temperature = v.check_float(
            "temperature", temperature, minimum=0.0, strict=True
        )
        self.seed = v.check_seed("seed", seed)
        self.inference = v.check_choice("inference", inference, INFERENCE_MODES)
        self.straight_through = v.check_bool("straight_through", straight_through)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.temperature_variable = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.temperature),
            trainable=False, name="temperature", dtype="float32",
        )

    def build(self, input_shape):
        _one_hot.check_logits_shape(
            _one_hot.first_shape(input_shape), "GumbelSoftmaxSample"
        )

    def draw(self, logits, num_samples=1, seed=None, hard=False):
        """`num_samples` draws per row, folded into the batch axis.

        Returns z of shape `(num_samples * B, N, C)`, sample-major: rows
        `k * B ... (k + 1) * B - 1` are the k-th draw for the whole batch.
        `hard=True` gives exact one-hot categorical draws; otherwise the
        relaxed (or straight-through) draw. With `seed` (an int tensor of
        shape (2,)) the draw is a fixed function of it and the layer's noise
        state is left alone.
        """
        perturbed = _one_hot.gumbel_perturbed(
            logits, num_samples, self.seed_generator, seed
        )
        if hard:
            z = _one_hot.one_hot_argmax(perturbed)
        else:
            tau = tf.convert_to_tensor(self.temperature_variable)
            z = tf.nn.softmax(perturbed / tau, axis=-1)
            if self.straight_through:
                # Forward: exactly one-hot (z - stop_gradient(z) is 0).
                z = _one_hot.one_hot_argmax(perturbed) + (
                    z - tf.stop_gradient(z)
                )
        return tf.reshape(z, _one_hot.fold_shape(logits))

    def draw_latent(self, params, context=(), num_samples=1, seed=None,
                    training=True):
        """`LatentSample` protocol: relaxed draws if `training`, else hard.

        log q is None: `posterior(params).log_prob(z)`, exact for the hard
        draws of evaluation (see the class docstring for training).
        """
        return self.draw(params[0], num_samples, seed, hard=not training), None

    def mode(self, params, context=()):
        """The one-hot argmax of the logits, (B, N, C) float32."""
        return _one_hot.one_hot_argmax(tf.cast(params[0], tf.float32))

    def call(self, inputs, training=None):
        logits = _one_hot.logits_input(self, inputs)
        if training:
            return self.draw(logits, 1)
        if self.inference == "sample":
            return self.draw(logits, 1, hard=True)
        return self.mode([logits])

    def compute_output_shape(self, input_shape):
        return tuple(_one_hot.first_shape(input_shape))

    def compute_output_spec(self, inputs, training=None):
        params, _ = self.split_inputs(inputs)
        return keras.KerasTensor(tuple(params[0].shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "temperature": self.temperature,
                "seed": self.seed,
                "inference": self.inference,
                "straight_through": self.straight_through,
            }
        )
        return config

