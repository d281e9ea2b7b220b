"""CategoricalSample: hard one-hot draws of N categorical latents."""

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.layers import _one_hot
from keras_vae.layers.latent_sample import LatentSample

INFERENCE_MODES = ("mode", "sample")


@keras.saving.register_keras_serializable(package="keras_vae")
class CategoricalSample(LatentSample):
    """Draws N one-hot latents of C classes exactly: z ~ q(z | x).

    ```none
    q(z | x) = prod_n OneHotCategorical(z_n; softmax(logits_n))
    z_n      = one_hot(argmax(logits_n + g_n)),  g ~ Gumbel(0, 1)   (Gumbel-max: exact)
    ```

    Unlike `GumbelSoftmaxSample`, training draws are the hard one-hot
    samples of the discrete model, never a relaxation, so z carries no
    gradient to the logits (`reparameterized = False`). Inside a
    `VAEModel` the objective supplies the encoder's gradient by the score
    function, ∇ E_q[f(z)] = E_q[f(z) ∇ log q(z | x)], with variance
    reduction:

    - `keras_vae.objectives.ELBO`: REINFORCE with control variates, a
      running-average baseline and an input-dependent learned baseline
      (NVIL, Mnih & Gregor 2014);
    - `keras_vae.objectives.IWAE`: VIMCO's leave-one-out per-sample
      baselines (Mnih & Rezende 2016).

    The latent's KL to its prior (by default
    `keras_vae.priors.UniformCategorical`) is analytic, so it is
    differentiated exactly. `log_likelihood`, `elbo`, `evaluate` and the
    exported signatures all score the discrete model. In a plain Keras
    model (no `VAEModel`) nothing gives the encoder a gradient through
    this layer.

    The noise is seeded by a `keras.random.SeedGenerator` whose state is
    saved with the weights: a fixed `seed` gives the same draws with and
    without XLA and after `.keras` save/load.

    Args:
        seed: int or None, seed of the noise.
        inference: what `call` returns when `training` is false
            (`predict`, serving): `"mode"` (default; the one-hot argmax of
            the logits) or `"sample"` (a draw).

    Call arguments:
        inputs: logits of shape `(batch, N, C)`, e.g. from
            `GumbelSoftmaxHead` (a Dense layer to N×C logits), or a
            one-element list holding them.
        training: Python bool; draws when true.

    Input shape:
        `(batch, N, C)`, C >= 2 known.

    Output shape:
        `(batch, N, C)`, float32 one-hot rows.

    Example:

    ```python
    logits = keras_vae.GumbelSoftmaxHead(num_variables=1, num_classes=10)(h)
    logits = keras_vae.KLRegularizer()(logits)      # UniformCategorical prior
    z = keras_vae.CategoricalSample(seed=0)(logits)
    ...
    vae.compile(loss=keras_vae.losses.BernoulliNLL(),
                objective=keras_vae.objectives.IWAE(num_samples=5))  # VIMCO
    ```

    References: Williams, "Simple statistical gradient-following
    algorithms for connectionist reinforcement learning", 1992; Mnih &
    Gregor, "Neural Variational Inference and Learning in Belief
    Networks", 2014; Mnih & Rezende, "Variational Inference for Monte
    Carlo Objectives", 2016.
    """

    num_params = 1
    family = "categorical"
    sampled_kl = False
    relaxed = False
    reparameterized = False

    def __init__(self, seed=None, inference="mode", **kwargs):
        # The logits stay float32 under mixed precision (no autocast).
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.seed = v.check_seed("seed", seed)
        self.inference = v.check_choice("inference", inference, INFERENCE_MODES)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        _one_hot.check_logits_shape(
            _one_hot.first_shape(input_shape), "CategoricalSample"
        )

    def draw(self, logits, num_samples=1, seed=None):
        """`num_samples` hard one-hot draws per row, `(num_samples * B, N,
        C)` sample-major; with `seed` (an int tensor of shape (2,)) a fixed
        function of it, the layer's noise state left alone. No gradient
        flows to the logits."""
        perturbed = _one_hot.gumbel_perturbed(
            tf.stop_gradient(logits), num_samples, self.seed_generator, seed
        )
        z = _one_hot.one_hot_argmax(perturbed)
        return tf.reshape(z, _one_hot.fold_shape(logits))

    def draw_latent(self, params, context=(), num_samples=1, seed=None,
                    training=True):
        """`LatentSample` protocol: hard draws (training or not); log q is
        `posterior(params).log_prob(z)` (None)."""
        return self.draw(params[0], num_samples, seed), None

    def mode(self, params, context=()):
        """The one-hot argmax of the logits, (B, N, C) float32."""
        return _one_hot.one_hot_argmax(tf.cast(params[0], tf.float32))

    def call(self, inputs, training=None):
        logits = _one_hot.logits_input(self, inputs)
        if training or self.inference == "sample":
            return self.draw(logits, 1)
        return self.mode([logits])

    def compute_output_shape(self, input_shape):
        return _one_hot.first_shape(input_shape)

    def compute_output_spec(self, inputs, training=None):
        params, _ = self.split_inputs(inputs)
        return keras.KerasTensor(tuple(params[0].shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({"seed": self.seed, "inference": self.inference})
        return config
