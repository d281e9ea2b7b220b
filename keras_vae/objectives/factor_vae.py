"""FactorVAE: the total correlation penalised through a discriminator.

```none
loss   = E_b[-(1/K) Σ_k log p(x_b | z_k)] + β·KL + γ·TC
TC     = KL(q(z) ‖ Π_d q(z_d)) ≈ E_q(z)[log D(z) / (1 - D(z))] = E_q(z)[logit D(z)]
D      : z -> P(z came from q(z) rather than Π_d q(z_d)),  D = sigmoid(logit)
D_loss = -½ E_q(z)[log D(z)] - ½ E_Πq(z_d)[log(1 - D(z̃))]
z̃      : z with each latent dimension permuted independently across the batch
```

The density-ratio trick (Sugiyama et al. 2012): the Bayes-optimal D has
D / (1 - D) = q(z) / Π_d q(z_d), so the mean logit on samples of q(z) is
the total correlation. The VAE and D are trained in one step: the TC term
reaches the encoder only (D's weights are read stopped), and D's loss
reaches D only (z stopped), added to the loss as `D_loss -
stop_gradient(D_loss)`: zero in value, so the reported loss is the VAE's.

References: Kim & Mnih, "Disentangling by Factorising", 2018;
disentanglement_lib (Locatello et al. 2019), `methods/unsupervised/vae.py`.
"""

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.seed_state import SavesSeedState
from keras_vae.objectives.base import Objective
from keras_vae.objectives.beta_tcvae import check_flat_gaussian
from keras_vae.random import uniform


@keras.saving.register_keras_serializable(package="keras_vae")
class FactorVAEDiscriminator(SavesSeedState, keras.layers.Layer):
    """The discriminator of `FactorVAE`: an MLP z (B, L) -> logit (B,).

    ```none
    h = leaky_relu(W_i h + b_i, negative_slope)    per hidden layer
    logit = w·h + b                                 log D(z) / (1 - D(z))
    ```

    Built by `FactorVAE.build` and tracked by the `VAEModel` (as
    `objective_layer`): its weights train with `FactorVAE`'s own
    optimizer, save and load with the model (with the state of its
    permutation noise), and are not part of any exported signature.

    Args:
        units: hidden units per layer (the paper: 5 of 1000).
        negative_slope: of the leaky ReLU (0.2, as the paper).
        seed: int or None, seed of the dimension-wise permutations.

    Input shape: `(batch, L)`. Output shape: `(batch,)`.
    """

    def __init__(self, units=(256, 256, 256), negative_slope=0.2, seed=None,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.units = _check_units(units)
        self.negative_slope = v.check_float("negative_slope", negative_slope,
                                            minimum=0.0)
        self.seed = v.check_seed("seed", seed)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.hidden = [
            keras.layers.Dense(u, dtype="float32", name=f"hidden_{i}")
            for i, u in enumerate(self.units)
        ]
        self.head = keras.layers.Dense(1, dtype="float32", name="logit")

    def build(self, input_shape):
        shape = (None, int(input_shape[-1]))
        for layer in self.hidden:
            layer.build(shape)
            shape = (None, layer.units)
        self.head.build(shape)

    def call(self, z):
        h = tf.cast(z, tf.float32)
        for layer in self.hidden:
            h = tf.nn.leaky_relu(layer(h), alpha=self.negative_slope)
        return self.head(h)[:, 0]

    def stopped_logits(self, z):
        """The logits with the weights read through `stop_gradient`: a
        gradient reaches z, none reaches the discriminator."""
        trainable = [tf.stop_gradient(w) for w in self.trainable_variables]
        logits, _ = self.stateless_call(
            trainable, list(self.non_trainable_variables), z)
        return logits

    def permute_dims(self, z, seed=None):
        """z (B, L) with each column permuted independently across rows:
        a sample of Π_d q(z_d) when the rows are samples of q(z). Drawn
        with the layer's seed generator (or a fixed `seed`, an int tensor
        of shape (2,)); identical with and without XLA."""
        keys = uniform(tf.shape(z), self.seed_generator, seed)
        order = tf.argsort(keys, axis=0, stable=True)          # (B, L)
        columns = tf.gather(tf.transpose(z), tf.transpose(order),
                            batch_dims=1)                      # (L, B)
        return tf.transpose(columns)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        return {
            **super().get_config(),
            "units": list(self.units),
            "negative_slope": self.negative_slope,
            "seed": self.seed,
        }


def _check_units(units):
    expected = "a non-empty sequence of positive integers"
    if isinstance(units, (str, bytes)) or not hasattr(units, "__iter__"):
        raise v.invalid("discriminator_units", expected, units)
    units = tuple(units)
    if not units:
        raise v.invalid("discriminator_units", expected, units)
    for u in units:
        try:
            v.check_positive_int("discriminator_units", u)
        except ValueError:
            raise v.invalid("discriminator_units", expected, units) from None
    return tuple(int(u) for u in units)


@keras.saving.register_keras_serializable(package="keras_vae")
class FactorVAE(Objective):
    """The FactorVAE objective (Kim & Mnih 2018): the ELBO plus γ times a
    discriminator's estimate of the total correlation of q(z).

    ```none
    loss   = E_b[-(1/K) Σ_k log p(x_b | z_k)] + penalty(KL) + γ · mean logit D(z)
             + (D_loss - stop_gradient(D_loss))
    D_loss = ½ mean softplus(-logit D(z)) + ½ mean softplus(logit D(z̃))
    ```

    z are the step's draws from q(z | x) (K·B rows) and z̃ the same draws
    with each latent dimension permuted independently across the rows.
    The TC term is D's logit, log D/(1 - D), evaluated with D's weights
    stopped, so it trains the encoder only; D_loss is evaluated at stopped
    z, so it trains D only, by D's own optimizer (the state layer's `optimizer`, Adam
    with the paper's β1 = 0.5, β2 = 0.9), in the same XLA step as the VAE.
    `penalty(KL)` is the `KLRegularizer`'s (β·KL, 1·KL by default).

    Differences from the paper: z̃ permutes the step's own batch (as
    disentanglement_lib does) rather than a second batch; D has one logit
    (log D/(1-D)) rather than two softmax outputs (the same model); the
    default D is smaller (3 layers of 256 units, not 6 of 1000), enough
    for 10 latent dimensions.

    `fit` reports, besides `loss`, `elbo`, `reconstruction` and `kl`:
    `total_correlation` (the batch mean of D's logit on z, the
    density-ratio estimate), `discriminator_loss` (D_loss) and
    `discriminator_accuracy` (the share of z with logit > 0 and of z̃
    with logit < 0, averaged: 0.5 is chance).

    The model must have one flat continuous, reparameterized latent (a
    Gaussian, full covariance or flow allowed); `compile` refuses others.
    The discriminator and its Adam belong to the model
    (`VAEModel.objective_layer`, made by `build` at each `compile`): one
    `FactorVAE` object compiled into two models gives each its own D; D's
    weights and its Adam's state save and load with the model.

    Args:
        gamma: γ, the weight of the TC (default 10.0; the paper shows γ
            from 10 to 100 on dSprites, and disentanglement_lib's study
            sweeps 10, 20, 30, 40, 50, 100).
        discriminator_units: hidden units per layer of D (default
            (256, 256, 256)).
        discriminator_learning_rate: Adam's learning rate for D (default
            1e-4, the paper's).
        num_samples: K, draws of z per example (default 1).
        seed: int or None, seed of the dimension-wise permutations.

    Example:

    ```python
    vae.compile(loss=keras_vae.losses.BernoulliNLL(),
                objective=keras_vae.objectives.FactorVAE(gamma=10.0))
    ```

    References: Kim & Mnih, "Disentangling by Factorising", 2018.
    """

    def __init__(self, gamma=10.0, discriminator_units=(256, 256, 256),
                 discriminator_learning_rate=1e-4, num_samples=1, seed=None):
        super().__init__(num_samples)
        self.gamma = v.check_float("gamma", gamma, minimum=0.0)
        self.discriminator_units = _check_units(discriminator_units)
        self.discriminator_learning_rate = v.check_float(
            "discriminator_learning_rate", discriminator_learning_rate,
            minimum=0.0, strict=True)
        self.seed = v.check_seed("seed", seed)

    def check(self, model):
        check_flat_gaussian(model, self, diagonal=False)

    def build(self, model):
        """A new discriminator (for z of the model's latent size), built,
        with its own Adam as its `optimizer` attribute: the model trains
        it with that optimizer and saves both."""
        layer = FactorVAEDiscriminator(
            self.discriminator_units, seed=self.seed,
            name="factor_vae_discriminator")
        layer.build((None, model.latent_dim))
        layer.optimizer = keras.optimizers.Adam(
            self.discriminator_learning_rate, beta_1=0.5, beta_2=0.9,
            name="discriminator_adam")
        return layer

    def compute(self, trace, state=None, sample_weight=None, tape=None):
        d = state
        if d is None:
            raise ValueError(
                "FactorVAE's discriminator is made by `compile` (the "
                "model's `objective_layer`): compile a VAEModel with this "
                "objective and score traces through it "
                "(`vae.compute_objective`).")
        level = trace.levels[0]
        z = tf.cast(level.z, tf.float32)                   # (K·B, L)
        k, batch = trace.num_samples, tf.shape(trace.log_px_z)[1]
        logits = tf.reshape(d.stopped_logits(z), (k, batch))
        tc = self.batch_mean(tf.reduce_mean(logits, 0), sample_weight)
        z_joint = tf.stop_gradient(z)
        joint = d(z_joint)
        permuted = d(d.permute_dims(z_joint))
        d_loss = 0.5 * (tf.reduce_mean(tf.nn.softplus(-joint))
                        + tf.reduce_mean(tf.nn.softplus(permuted)))
        accuracy = 0.5 * (
            tf.reduce_mean(tf.cast(joint > 0.0, tf.float32))
            + tf.reduce_mean(tf.cast(permuted < 0.0, tf.float32)))
        vae_loss = (self.batch_mean(trace.reconstruction, sample_weight)
                    + self.kl_penalty(trace, sample_weight)
                    + self.gamma * tc)
        loss = vae_loss + (d_loss - tf.stop_gradient(d_loss))
        return loss, {**self.standard_metrics(trace, sample_weight),
                      "total_correlation": tc,
                      "discriminator_loss": d_loss,
                      "discriminator_accuracy": accuracy}

    def get_config(self):
        return {
            **super().get_config(),
            "gamma": self.gamma,
            "discriminator_units": list(self.discriminator_units),
            "discriminator_learning_rate": self.discriminator_learning_rate,
            "seed": self.seed,
        }
