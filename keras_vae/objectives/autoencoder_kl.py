"""AutoencoderKL: the loss latent diffusion's KL autoencoder is trained with
(likelihood + per-element LPIPS + kl_weight · KL + an adaptively weighted
hinge PatchGAN term, the discriminator on its own Adam in the same step).

References: Rombach et al., "High-Resolution Image Synthesis with Latent
Diffusion Models", 2022 (CompVis latent-diffusion,
`ldm/modules/losses/contperceptual.py`); Esser, Rombach & Ommer, "Taming
Transformers for High-Resolution Image Synthesis", 2021.
"""

import copy
import inspect
import json
import weakref

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.losses.perceptual import PerceptualDistance
from keras_vae.objectives.base import Objective


class _Untracked:
    """Holds references Keras must neither track nor save (the model and
    the decoder's last kernel, which the model already owns)."""

    def __init__(self, model, kernel):
        self.model = weakref.ref(model)
        self.kernel = kernel


class _AutoencoderKLState(keras.layers.Layer):
    """The state `AutoencoderKL.build(model)` makes for one model: the
    frozen feature model (tracked so that its weights save with the
    model), a new discriminator with its own Adam (`optimizer`), and the
    step counter of `discriminator_start`."""

    def __init__(self, model, feature_model, discriminator, kernel,
                 optimizer, **kwargs):
        super().__init__(name="autoencoder_kl_state", dtype="float32",
                         **kwargs)
        self.refs = _Untracked(model, kernel)
        if feature_model is not None:
            self.feature_model = feature_model
        if discriminator is not None:
            self.discriminator = discriminator
            self.optimizer = optimizer
            self.step = self.add_weight(
                shape=(), dtype="int64", initializer="zeros",
                trainable=False, aggregation="only_first_replica",
                name="step")
        self.built = True

    def stopped_logits(self, images, training):
        """D_φ(images) with the weights stopped: a gradient reaches the
        images, none reaches D_φ."""
        d = self.discriminator
        trainable = [tf.stop_gradient(w) for w in d.trainable_variables]
        kwargs = {}
        if "training" in inspect.signature(d.call).parameters:
            kwargs["training"] = training
        logits, _ = d.stateless_call(
            trainable, list(d.non_trainable_variables), images, **kwargs)
        return logits


@keras.saving.register_keras_serializable(package="keras_vae")
class AutoencoderKL(Objective):
    """The latent-diffusion autoencoder loss: likelihood + LPIPS + KL + PatchGAN.

    ```none
    nll      = E_b[-log p(x | z)] + perceptual_weight * D * E_b[LPIPS(x, x̂)]
    loss     = nll + kl_weight * penalty(KL)
               + [step >= discriminator_start] * λ * g                  g = -E_b mean D_φ(x̂)
    λ        = discriminator_weight
               * clip(‖∇_W nll‖ / (‖∇_W g‖ + adaptive_weight_epsilon), 0, adaptive_weight_max)
    D_φ      trained on ½ (mean relu(1 - D_φ(x)) + mean relu(1 + D_φ(x̂))), its own Adam
    ```

    The recipe of Stable Diffusion's KL autoencoder (CompVis
    latent-diffusion `LPIPSWithDiscriminator`, config
    `autoencoder_kl_32x32x4.yaml`: `kl_weight=1e-6`,
    `disc_weight=0.5`, `disc_start=50001`) in one train step:

    * **Reconstruction**: the compiled likelihood (`trace.reconstruction`,
      with masks and sample weights as `ELBO`). The reference's L1 with its
      log-variance at 0 (it is never trained there: not in the optimizer)
      is `keras_vae.losses.LaplaceNLL(scale=1.0)` (up to the constant
      D log 2); `LaplaceNLL(scale="learned_scalar")` with
      `keras_vae.SharedLogScale` is the trained form.
    * **Perceptual** (with `perceptual`): x̂ = the likelihood's mean of
      the decoder output, scored against the targets by
      `PerceptualDistance`. The reference adds LPIPS to the L1 *per
      element* before summing over the D = H·W·C elements of an image,
      so LPIPS weighs D times per example; to stay faithful the term here
      is `perceptual_weight * D * LPIPS` per example (`perceptual_weight`
      is per element, as in latent diffusion; divide it by D for a
      once-per-image weight). The reference also divides this term by
      exp(logvar) = 1; here it is not divided by a learned scale. The
      `perceptual` metric is the batch-mean LPIPS itself (not × D).
    * **KL**: `kl_weight` × each `KLRegularizer`'s penalty (β·KL with
      the default β = 1, so kl_weight·KL; free bits / capacity apply).
    * **Adversarial** (with `discriminator`): the hinge generator loss g,
      scaled by the adaptive weight λ of Esser et al. from the gradient
      norms at W, the kernel of the decoder's last layer with a kernel
      (`last_layer` names another), read from the step's persistent tape
      (`compute`'s `tape`; no second forward pass). λ is a constant
      (stopped). The discriminator is a new copy of `discriminator` per
      model (`build`), trained by its own `Adam(discriminator_learning_rate,
      discriminator_beta_1, discriminator_beta_2)` on the hinge loss at
      stopped images, in the same XLA step. Before `discriminator_start`
      (a step counter in the state, advanced by training steps only) both
      the generator term and the discriminator's loss are multiplied by 0:
      its gradient is exactly 0, so its Adam (zero moments) leaves its
      weights bit-identical while its iteration count advances, as the
      reference's.

    Outside training (`evaluate`, `compute_objective` without a tape) λ
    cannot be computed: it is reported as 0 and the loss has no generator
    term, as in the reference (its `calculate_adaptive_weight` fails
    without autograd and it uses 0); `generator_loss` still reports g.

    `fit` reports `elbo`, `reconstruction` and `kl` (as `ELBO`), and with
    `perceptual`: `perceptual` (batch-mean LPIPS); with `discriminator`:
    `generator_loss` (g), `adaptive_weight` (λ, including
    `discriminator_weight`), `discriminator_loss` (d_loss, 0 before the
    start), `discriminator_real_logits` and `discriminator_fake_logits`
    (means of D_φ on x and x̂).

    Deliberate differences from the reference: one forward pass serves both
    sides (the reference's discriminator step runs a second forward pass
    after the autoencoder's update, with a new posterior draw); the
    default discriminator normalisation is GroupNorm (see
    `PatchGANDiscriminator`); `discriminator=None` (the default) means no
    adversarial term, and `perceptual=None` no perceptual term: ImageNet
    weights cannot be assumed (pass
    `PerceptualDistance(vgg16_lpips_features())` and
    `PatchGANDiscriminator()` for the full recipe).

    Saving: `get_config` holds both architectures
    (`keras.saving.serialize_keras_object`); the weights of the model's
    copy of the discriminator, its Adam's state, the step counter and the
    feature model's weights save and load with the model (its
    `objective_layer`), and stay out of `export_serving`. The feature
    model is frozen, so it is shared (read-only) by every model the
    objective is compiled into, not copied (a VGG16 is 58 MB); each
    model's `.keras` file holds its weights.

    The model must take one image input `(B, H, W, C)` (its targets have
    that shape) and must not be compiled with `missing_values` when
    `perceptual` or `discriminator` is set; `compile` refuses a feature
    model whose input shape does not fit the images, a discriminator whose
    output is not a patch map `(B, h, w, 1)`, and a decoder without a
    kernel (when `discriminator` is set).

    Args:
        kl_weight: float >= 0, the weight of the KL (1e-6, the KL-f8
            config's).
        perceptual: None (no perceptual term), a
            `keras_vae.losses.PerceptualDistance`, or a feature
            `keras.Model` (wrapped in `PerceptualDistance` with unit
            weights). It must read images in the range of x̂ (e.g.
            `vgg16_lpips_features(input_range=(0, 1))` for data in [0, 1]).
        perceptual_weight: float >= 0, per data element (see above; 1.0).
        discriminator: None (no adversarial term) or a Keras layer mapping
            images `(B, H, W, C)` to patch logits `(B, h, w, 1)`, e.g.
            `keras_vae.PatchGANDiscriminator()`; copied per model.
        discriminator_weight: float >= 0, the factor of the adaptive
            weight (0.5).
        discriminator_start: int >= 0, the training step from which the
            adversarial terms are on (0; the KL-f8 config: 50001).
        discriminator_learning_rate: float > 0, Adam's learning rate for
            the discriminator (1e-4).
        discriminator_beta_1, discriminator_beta_2: Adam's betas for the
            discriminator (0.5, 0.9, the reference's, also used for the
            autoencoder there).
        adaptive_weight_max: float > 0, the clip of the adaptive weight
            before `discriminator_weight` (1e4).
        adaptive_weight_epsilon: float > 0, added to ‖∇_W g‖ (1e-4).
        last_layer: None (the decoder's last layer with a kernel, nested
            models searched) or the name of the layer of the model whose
            `kernel` is W.

    Example:

    ```python
    objective = keras_vae.objectives.AutoencoderKL(
        kl_weight=1e-6,
        perceptual=keras_vae.losses.PerceptualDistance(
            keras_vae.losses.vgg16_lpips_features(input_range=(0, 1))),
        discriminator=keras_vae.PatchGANDiscriminator(),
        discriminator_start=50001)
    vae.compile(optimizer=keras.optimizers.Adam(4.5e-6, 0.5, 0.9),
                loss=keras_vae.losses.LaplaceNLL(scale=1.0),
                objective=objective)
    ```

    References: Rombach et al., "High-Resolution Image Synthesis with
    Latent Diffusion Models", 2022; Esser, Rombach & Ommer, "Taming
    Transformers for High-Resolution Image Synthesis", 2021; Zhang et al.,
    "The Unreasonable Effectiveness of Deep Features as a Perceptual
    Metric", 2018.
    """

    def __init__(self, kl_weight=1e-6, perceptual=None, perceptual_weight=1.0,
                 discriminator=None, discriminator_weight=0.5,
                 discriminator_start=0, discriminator_learning_rate=1e-4,
                 discriminator_beta_1=0.5, discriminator_beta_2=0.9,
                 adaptive_weight_max=1e4, adaptive_weight_epsilon=1e-4,
                 last_layer=None):
        super().__init__(num_samples=1)
        self.kl_weight = v.check_float("kl_weight", kl_weight, minimum=0.0)
        self.perceptual = _check_perceptual(perceptual)
        self.perceptual_weight = v.check_float(
            "perceptual_weight", perceptual_weight, minimum=0.0)
        self.discriminator = _check_discriminator(discriminator)
        self.discriminator_weight = v.check_float(
            "discriminator_weight", discriminator_weight, minimum=0.0)
        if isinstance(discriminator_start, bool) or not isinstance(
                discriminator_start, int) or discriminator_start < 0:
            raise v.invalid("discriminator_start", "an integer >= 0",
                            discriminator_start)
        self.discriminator_start = int(discriminator_start)
        self.discriminator_learning_rate = v.check_float(
            "discriminator_learning_rate", discriminator_learning_rate,
            minimum=0.0, strict=True)
        for name, beta in (("discriminator_beta_1", discriminator_beta_1),
                           ("discriminator_beta_2", discriminator_beta_2)):
            beta = v.check_float(name, beta, minimum=0.0)
            if beta >= 1.0:
                raise v.invalid(name, "a float in [0, 1)", beta)
        self.discriminator_beta_1 = float(discriminator_beta_1)
        self.discriminator_beta_2 = float(discriminator_beta_2)
        self.adaptive_weight_max = v.check_float(
            "adaptive_weight_max", adaptive_weight_max, minimum=0.0,
            strict=True)
        self.adaptive_weight_epsilon = v.check_float(
            "adaptive_weight_epsilon", adaptive_weight_epsilon, minimum=0.0,
            strict=True)
        if last_layer is not None and not isinstance(last_layer, str):
            raise v.invalid("last_layer", "None or a layer name", last_layer)
        self.last_layer = last_layer

    # ------------------------------------------------------------ compile
    def check(self, model):
        if self.perceptual is None and self.discriminator is None:
            return
        if model.missing_values is not None:
            raise ValueError(
                "AutoencoderKL with a perceptual or adversarial term scores "
                "whole images and cannot take missing entries: compile "
                "without `missing_values`. Received: missing_values="
                f"{model.missing_values!r}")
        shape = image_shape(model)
        if self.perceptual is not None:
            self.perceptual.check_input_shape(shape)
        if self.discriminator is not None:
            self._new_discriminator(shape)
            last_kernel(model, self.last_layer)

    def build(self, model):
        """The model's state: the feature model (shared, frozen), a new
        copy of the discriminator, built for the model's images, with its
        own Adam (built on its weights), and the step counter. None when
        there is neither a perceptual nor an adversarial term."""
        if self.perceptual is None and self.discriminator is None:
            return None
        shape = image_shape(model)
        discriminator = optimizer = kernel = None
        if self.discriminator is not None:
            discriminator = self._new_discriminator(shape)
            kernel = last_kernel(model, self.last_layer)
            optimizer = keras.optimizers.Adam(
                self.discriminator_learning_rate,
                beta_1=self.discriminator_beta_1,
                beta_2=self.discriminator_beta_2,
                name="discriminator_adam")
        feature_model = (None if self.perceptual is None
                         else self.perceptual.feature_model)
        return _AutoencoderKLState(model, feature_model, discriminator,
                                   kernel, optimizer)

    def _new_discriminator(self, shape):
        """A new copy of `discriminator` (new weights), built for images of
        `shape`; refuses one whose output is not `(B, h, w, 1)`."""
        clone = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(self.discriminator))
        out = clone(keras.Input(shape))
        out_shape = tuple(getattr(out, "shape", ()))
        if len(out_shape) != 4 or out_shape[-1] != 1:
            raise v.invalid(
                "discriminator", "a layer mapping images (B, H, W, C) to a "
                f"patch map of logits (B, h, w, 1); on images {shape} it "
                f"outputs {out_shape}", self.discriminator)
        return clone

    # ------------------------------------------------------------ compute
    def compute(self, trace, state=None, sample_weight=None, tape=None):
        metrics = self.standard_metrics(trace, sample_weight)
        terms = trace.reconstruction
        if self.perceptual is not None or self.discriminator is not None:
            if state is None:
                raise ValueError(
                    "AutoencoderKL's state (feature model, discriminator) is "
                    "made by `compile`: compile a VAEModel with this "
                    "objective and score traces through it "
                    "(`vae.compute_objective`).")
            model = state.refs.model()
            x = tf.cast(trace.targets, tf.float32)
            x_hat = tf.cast(model.likelihood.mean(trace.decoder_params),
                            tf.float32)
        if self.perceptual is not None:
            per_image = self.perceptual.distance(x, x_hat)
            elements = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32)
            terms = terms + self.perceptual_weight * elements * per_image
            metrics["perceptual"] = self.batch_mean(per_image, sample_weight)
        nll = self.batch_mean(terms, sample_weight)
        loss = nll + self.kl_weight * self.kl_penalty(trace, sample_weight)
        if self.discriminator is not None:
            loss = loss + self._adversarial(
                state, x, x_hat, nll, trace.training, sample_weight, tape,
                metrics)
        return loss, metrics

    def _adversarial(self, state, x, x_hat, nll, training, sample_weight,
                     tape, metrics):
        """λ·on·g + (d_loss - stop_gradient(d_loss)); fills the metrics."""
        fake_g = state.stopped_logits(x_hat, training)
        g = self.batch_mean(-tf.reduce_mean(fake_g, axis=[1, 2, 3]),
                            sample_weight)
        on = tf.cast(state.step >= self.discriminator_start, tf.float32)
        if tape is not None:
            kernel = state.refs.kernel
            with tape.stop_recording():
                g_nll, g_gen = (
                    tape.gradient(t, kernel, unconnected_gradients=(
                        tf.UnconnectedGradients.ZERO))
                    for t in (nll, g))
            ratio = _norm(g_nll) / (_norm(g_gen)
                                    + self.adaptive_weight_epsilon)
            weight = self.discriminator_weight * tf.stop_gradient(
                tf.clip_by_value(ratio, 0.0, self.adaptive_weight_max))
            state.step.assign_add(1)
        else:
            weight = tf.constant(0.0)
        batch = tf.shape(x)[0]
        logits = state.discriminator(
            tf.stop_gradient(tf.concat([x, x_hat], axis=0)),
            training=training)
        real, fake = logits[:batch], logits[batch:]
        d_loss = on * 0.5 * (tf.reduce_mean(tf.nn.relu(1.0 - real))
                             + tf.reduce_mean(tf.nn.relu(1.0 + fake)))
        metrics.update({
            "generator_loss": g,
            "adaptive_weight": weight,
            "discriminator_loss": d_loss,
            "discriminator_real_logits": tf.reduce_mean(real),
            "discriminator_fake_logits": tf.reduce_mean(fake),
        })
        return weight * on * g + (d_loss - tf.stop_gradient(d_loss))

    # ------------------------------------------------------ serialisation
    def get_config(self):
        config = {
            "kl_weight": self.kl_weight,
            "perceptual": _serialize(self.perceptual),
            "perceptual_weight": self.perceptual_weight,
            "discriminator": _serialize(self.discriminator),
            "discriminator_weight": self.discriminator_weight,
            "discriminator_start": self.discriminator_start,
            "discriminator_learning_rate": self.discriminator_learning_rate,
            "discriminator_beta_1": self.discriminator_beta_1,
            "discriminator_beta_2": self.discriminator_beta_2,
            "adaptive_weight_max": self.adaptive_weight_max,
            "adaptive_weight_epsilon": self.adaptive_weight_epsilon,
            "last_layer": self.last_layer,
        }
        return config


# ---------------------------------------------------------------- helpers
def _norm(gradient):
    return tf.norm(tf.cast(gradient, tf.float32))


def _serialize(obj):
    """The Keras serialisation of `obj` as plain JSON data (tuples become
    lists, as after a save), or None."""
    if obj is None:
        return None
    return json.loads(json.dumps(keras.saving.serialize_keras_object(obj)))


def _check_perceptual(perceptual):
    if isinstance(perceptual, dict):  # deserialising consumes the dict
        perceptual = keras.saving.deserialize_keras_object(
            copy.deepcopy(perceptual))
    if perceptual is None or isinstance(perceptual, PerceptualDistance):
        return perceptual
    if isinstance(perceptual, keras.Model):
        return PerceptualDistance(perceptual)
    raise v.invalid(
        "perceptual", "None, a keras_vae.losses.PerceptualDistance or a "
        "feature keras.Model", perceptual)


def _check_discriminator(discriminator):
    if isinstance(discriminator, dict):  # deserialising consumes the dict
        discriminator = keras.saving.deserialize_keras_object(
            copy.deepcopy(discriminator))
    if discriminator is None or isinstance(discriminator, keras.layers.Layer):
        return discriminator
    raise v.invalid(
        "discriminator", "None or a Keras layer mapping images to patch "
        "logits (e.g. keras_vae.PatchGANDiscriminator())", discriminator)


def image_shape(model):
    """The shape `(H, W, C)` of the images a model reads: its one rank-4
    input (its targets have this shape)."""
    images = [t for t in model.inputs if len(t.shape) == 4]
    if len(images) != 1:
        raise ValueError(
            "AutoencoderKL needs a model with one image input (B, H, W, C), "
            "whose shape its targets share; model "
            f"'{model.name}' has inputs "
            f"{[tuple(t.shape) for t in model.inputs]}.")
    return tuple(images[0].shape[1:])


def last_kernel(model, name=None):
    """W of the adaptive weight: the `kernel` of the layer named `name`, or
    of the decoder's last layer (in its topological order, searching nested
    models) that has one. Raises a `ValueError` when there is none."""
    if name is not None:
        try:
            layer = model.get_layer(name)
        except ValueError:
            raise v.invalid(
                "last_layer", "the name of a layer of the model with a "
                "kernel", name) from None
        kernel = _trainable_kernel(layer)
        if kernel is None:
            raise v.invalid(
                "last_layer", "a layer with a trainable `kernel` (the "
                f"adaptive weight's W); '{name}' has none", name)
        return kernel
    kernel = _search_kernel(model.decoder)
    if kernel is None:
        raise ValueError(
            "AutoencoderKL's adaptive weight needs the kernel of the "
            "decoder's last layer (a Dense or convolution), and the decoder "
            f"of model '{model.name}' has no layer with a trainable `kernel` "
            f"(layers: {[l.name for l in model.decoder.layers]}). Give the "
            "layer's name as `last_layer`, or use no discriminator.")
    return kernel


def _search_kernel(model):
    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            kernel = _search_kernel(layer)
        else:
            kernel = _trainable_kernel(layer)
        if kernel is not None:
            return kernel
    return None


def _trainable_kernel(layer):
    kernel = getattr(layer, "kernel", None)
    if isinstance(kernel, keras.Variable) and kernel.trainable:
        return kernel
    return None

