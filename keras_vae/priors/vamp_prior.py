"""VampPrior: a mixture of the encoder's posteriors at learned pseudo-inputs."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import _validation as v
from keras_vae.posteriors import posterior_distribution
from keras_vae.priors.base import Prior

tfd = tfp.distributions

PSEUDO_INPUT_ACTIVATIONS = (None, "sigmoid", "hard_sigmoid", "tanh")


class _EncoderRef:
    """Holds the encoder outside Keras tracking (its weights belong to the
    model, not to the prior: they must not be saved or trained twice)."""

    def __init__(self, encoder):
        self.encoder = encoder


@keras.saving.register_keras_serializable(package="keras_vae")
class VampPrior(Prior):
    """p(z) = (1/K) sum_k q(z | u_k): the encoder's posteriors at K learned
    pseudo-inputs u_k (Tomczak & Welling 2017, "VAE with a VampPrior").

    ```none
    u_k = activation(w_k),  w_k trainable, shape of one model input
    p(z) = MixtureSameFamily(Categorical(uniform K), q(z | u_1..K))
    ```

    The prior is tied to the encoder, so it is completed by `VAEModel`,
    which finds the encoder in the graph and creates the pseudo-inputs
    with the shape of the model's input (one input, no condition). Training
    moves the pseudo-inputs and, through the KL, the encoder. There is no
    closed-form KL from a Gaussian to this mixture: `KLRegularizer` uses the
    sampled estimate log q(z | x) - log p(z) at the z the model drew.

    Args:
        num_pseudo_inputs: positive int, K (the paper uses 500 on MNIST).
        pseudo_input_activation: None, "sigmoid", "hard_sigmoid" (the
            paper's hardtanh into [0, 1], for pixel data) or "tanh",
            applied to the trainable pseudo-input variables.
        initializer: initializer of the pseudo-input variables; default
            N(0, 0.01) (the paper's N(0.05, 0.01) before a hardtanh is
            close to this after "hard_sigmoid"'s shift). To start from
            data, assign training examples: `prior.set_pseudo_inputs(x[:K])`
            (values are kept `margin` inside a bounded activation's range,
            where its gradient is not zero).
        seed: int or None, for the default initializer.

    Example:

    ```python
    prior = keras_vae.priors.VampPrior(num_pseudo_inputs=100)
    q = keras_vae.KLRegularizer(prior=prior)(keras_vae.GaussianEncoderHead(16)(h))
    vae = keras_vae.VAEModel(x_in, logits)   # attaches the encoder
    ```
    """

    flat_only = True
    needs_encoder = True  # VAEModel attaches the encoder and builds it

    def __init__(self, num_pseudo_inputs=500, pseudo_input_activation=None,
                 initializer=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_pseudo_inputs = v.check_positive_int(
            "num_pseudo_inputs", num_pseudo_inputs
        )
        self.pseudo_input_activation = v.check_choice(
            "pseudo_input_activation", pseudo_input_activation,
            PSEUDO_INPUT_ACTIVATIONS,
        )
        self.seed = v.check_seed("seed", seed)
        if initializer is None:
            initializer = keras.initializers.RandomNormal(
                stddev=0.01, seed=self.seed
            )
        self.initializer = keras.initializers.get(initializer)
        self._encoder = None

    def attach_encoder(self, encoder, input_shape):
        """Called by `VAEModel`: `encoder(u)` -> posterior parameters list.

        Creates the pseudo-inputs (shape `(K,) + input_shape[1:]`) the first
        time.
        """
        self._encoder = _EncoderRef(encoder)
        if not self.built:
            self.build(input_shape)

    def build(self, input_shape):
        shape = (self.num_pseudo_inputs,) + tuple(input_shape[1:])
        if any(d is None for d in shape):
            raise ValueError(
                "VampPrior needs a model input of fully known shape for its "
                f"pseudo-inputs. Received: input_shape={input_shape}"
            )
        self.pseudo_input_variables = self.add_weight(
            shape=shape, initializer=self.initializer,
            name="pseudo_inputs", dtype="float32",
        )

    @property
    def pseudo_inputs(self):
        """The K pseudo-inputs u_k, after the activation."""
        w = self.pseudo_input_variables
        if self.pseudo_input_activation is None:
            return w
        return keras.activations.get(self.pseudo_input_activation)(w)

    def set_pseudo_inputs(self, values, margin=0.05):
        """Sets u_k to `values` (e.g. K training examples), inverting the
        activation.

        With a bounded activation the values are first clipped to
        `margin` inside its range ([margin, 1 - margin] for "sigmoid" and
        "hard_sigmoid", [-1 + margin, 1 - margin] for "tanh"): binary
        pixels of exactly 0 or 1 would land where "hard_sigmoid" is flat
        and "sigmoid" nearly so, and the pseudo-inputs would never move.
        """
        values = tf.convert_to_tensor(values, tf.float32)
        want = tuple(self.pseudo_input_variables.shape)
        if tuple(values.shape) != want:
            raise ValueError(
                "Invalid value received for argument `values`: VampPrior has "
                f"{want[0]} pseudo-inputs of shape {want[1:]}, so it expects "
                f"shape {want}. Received: shape={tuple(values.shape)}"
            )
        margin = v.check_float("margin", margin, minimum=0.0)
        if margin >= 0.5:
            raise v.invalid("margin", "a float in [0, 0.5)", margin)
        act = self.pseudo_input_activation
        lo, hi = margin, 1.0 - margin
        if act == "sigmoid":
            p = tf.clip_by_value(values, max(lo, 1e-6), min(hi, 1 - 1e-6))
            values = tf.math.log(p) - tf.math.log1p(-p)
        elif act == "hard_sigmoid":  # keras: relu6(x + 3) / 6
            values = tf.clip_by_value(values, lo, hi) * 6.0 - 3.0
        elif act == "tanh":
            bound = min(1.0 - 2.0 * margin, 1.0 - 1e-6)
            values = tf.atanh(tf.clip_by_value(values, -bound, bound))
        self.pseudo_input_variables.assign(values)

    def distribution(self, event_shape=None):
        if self._encoder is None:
            raise ValueError(
                "VampPrior has no encoder: it is completed by VAEModel, which "
                "attaches the encoder of the KLRegularizer's latent. Use it "
                "inside a keras_vae.VAEModel."
            )
        params = self._encoder.encoder(self.pseudo_inputs)
        components = posterior_distribution(params)  # batch (K,)
        k = self.num_pseudo_inputs
        return tfd.MixtureSameFamily(
            tfd.Categorical(logits=tf.zeros([k], tf.float32)), components
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_pseudo_inputs": self.num_pseudo_inputs,
                "pseudo_input_activation": self.pseudo_input_activation,
                "initializer": keras.initializers.serialize(self.initializer),
                "seed": self.seed,
            }
        )
        return config
