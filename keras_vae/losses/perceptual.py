"""PerceptualDistance: LPIPS on the feature outputs of any Keras model."""

import keras
import numpy as np
import tensorflow as tf

from keras_vae import _validation as v


@keras.saving.register_keras_serializable(package="keras_vae")
class PerceptualDistance(keras.losses.Loss):
    """LPIPS: the distance between two images in a frozen network's features.

    ```none
    f_k(x)        : the k-th feature output of `feature_model`, (B, ..., C_k)
    u(f)[p, c]    = f[p, c] / (sqrt(sum_c' f[p, c']**2) + epsilon)   per position p
    d_k(x, y)     = mean_p sum_c w_k[c] (u(f_k(x))[p, c] - u(f_k(y))[p, c])**2
    distance(x, y) = sum_k d_k(x, y)                                  per example
    loss           = mean_b distance(y_true_b, y_pred_b)
    ```

    Each feature output is normalised to unit length over its channels (the
    last axis) at every position, the squared difference is summed over
    channels (weighted by `w_k` when `weights` is given, unit weights
    otherwise: the "LPIPS-baseline" of Zhang et al. with `lpips=False`),
    averaged over the positions (every axis between the batch and the
    channels; none for a `(B, C)` output) and summed over the outputs.
    `distance(x, x) = 0`.

    The feature model is frozen: the constructor sets
    `feature_model.trainable = False`, it is always called with
    `training=False` (batch-norm statistics are never updated), and its
    weights are never handed to an optimizer — gradients flow through it
    to the images only. Both images of a pair go through it in one call
    (concatenated along the batch axis). Features are compared in float32
    whatever the feature model's dtype policy.

    The feature model's input shape must fit the data: checked at the first
    call (an error names `feature_model` and both shapes). A model built
    with `None` spatial dimensions takes images of any size.

    **LPIPS on VGG16** (the perceptual loss of latent diffusion and taming
    transformers): `vgg16_lpips_features()` builds
    `keras.applications.VGG16(include_top=False, weights="imagenet")`
    truncated to the LPIPS layers relu1_2, relu2_2, relu3_3, relu4_3,
    relu5_3 (Keras layer names `block1_conv2`, `block2_conv2`,
    `block3_conv3`, `block4_conv3`, `block5_conv3`: Keras' conv layers
    carry their ReLU), with the input scaling inside: images in
    `input_range` (LPIPS: [-1, 1]) are mapped to 0..255 and through
    `keras.applications.vgg16.preprocess_input` (caffe style: RGB to BGR,
    ImageNet channel means subtracted), which is what Keras' VGG16 weights
    expect. (LPIPS itself maps [-1, 1] images through a fixed shift/scale
    to torchvision's ImageNet normalisation, which its torchvision VGG16
    expects; Keras' VGG16 weights are the caffe ones, so values differ from
    the reference implementation's by the network's weights, not by the
    formula.) LPIPS' learned per-channel weights ("lin" layers, trained
    for torchvision's VGG) are not bundled: with `weights=None` all
    channels weigh 1; to use them, pass one vector per output
    (`lin_k.weight.reshape(-1)` of an LPIPS checkpoint).

    Saving: the config holds the feature model's architecture
    (`keras.saving.serialize_keras_object`), not its weights; the weights
    travel with whatever saves the loss's state: a model compiled with this
    loss writes them into its `.keras` file (Keras saves the compiled
    loss's variables), and an objective's state layer tracking the feature
    model (`AutoencoderKL`) saves them with the model. `from_config` alone
    gives the architecture with newly initialised weights.

    Args:
        feature_model: a `keras.Model` with one input (images `(B, ...)`)
            and one or more feature outputs `(B, ..., C_k)`.
        weights: None (unit weights), or a list with one non-negative
            per-channel weight vector (length `C_k`) per feature output.
        epsilon: float >= 0 added to the feature norm before dividing
            (LPIPS: 1e-10); keeps all-zero feature vectors (common after a
            ReLU) at 0 with finite gradients.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:

    ```python
    lpips = keras_vae.losses.PerceptualDistance(
        keras_vae.losses.vgg16_lpips_features(weights="imagenet"))
    lpips.distance(images, reconstructions)   # (B,), images in [-1, 1]
    model.compile(loss=lpips)                  # batch mean as a loss
    ```

    References: Zhang, Isola, Efros, Shechtman & Wang, "The Unreasonable
    Effectiveness of Deep Features as a Perceptual Metric", 2018;
    Esser, Rombach & Ommer, "Taming Transformers", 2021.
    """

    def __init__(self, feature_model, weights=None, epsilon=1e-10,
                 reduction="sum_over_batch_size", name="perceptual_distance",
                 dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        if not isinstance(feature_model, keras.Model):
            raise v.invalid(
                "feature_model", "a keras.Model with feature outputs",
                feature_model)
        inputs = getattr(feature_model, "inputs", None)
        if inputs is not None and len(inputs) != 1:
            raise v.invalid(
                "feature_model", "a keras.Model with one input (images), not "
                f"{len(inputs)}", feature_model)
        feature_model.trainable = False
        self.feature_model = feature_model
        self.epsilon = v.check_float("epsilon", epsilon, minimum=0.0)
        self.weights = _check_weights(weights, _output_channels(feature_model))

    # ---------------------------------------------------------------- API
    @property
    def feature_input_shape(self):
        """The feature model's input shape without the batch axis, or None
        when the model does not declare it (a subclassed model)."""
        inputs = getattr(self.feature_model, "inputs", None)
        if not inputs:
            return None
        return tuple(inputs[0].shape[1:])

    def features(self, images):
        """The feature model's outputs on `images`, as a list."""
        outputs = self.feature_model(images, training=False)
        return list(keras.tree.flatten(outputs))

    def distance(self, x, y):
        """Per-example LPIPS distance between image batches, `(B,)` float32."""
        x = tf.convert_to_tensor(x)
        y = tf.cast(tf.convert_to_tensor(y), x.dtype)
        self._check_shapes(x, y)
        batch = tf.shape(x)[0]
        feats = self.features(tf.concat([x, y], axis=0))
        if self.weights is not None and len(feats) != len(self.weights):
            raise v.invalid(
                "weights", f"one vector per feature output ({len(feats)})",
                self.weights)
        total = tf.zeros([batch], tf.float32)
        for k, f in enumerate(feats):
            f = tf.cast(f, tf.float32)
            u = self._unit(f)
            diff = tf.square(u[:batch] - u[batch:])
            if self.weights is not None:
                diff = diff * tf.constant(self.weights[k], tf.float32)
            per_position = tf.reduce_sum(diff, axis=-1)
            axes = list(range(1, len(per_position.shape)))
            total += (tf.reduce_mean(per_position, axis=axes) if axes
                      else per_position)
        return total

    def call(self, y_true, y_pred):
        return self.distance(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.update({
            "feature_model": keras.saving.serialize_keras_object(
                self.feature_model),
            "weights": (None if self.weights is None
                        else [list(map(float, w)) for w in self.weights]),
            "epsilon": self.epsilon,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("feature_model"), dict):
            config["feature_model"] = keras.saving.deserialize_keras_object(
                config["feature_model"])
        return cls(**config)

    # ----------------------------------------------------------- helpers
    def _unit(self, f):
        """f / (||f||_channels + epsilon), with a finite gradient where the
        channel vector is 0 (the norm's gradient is taken as 0 there)."""
        sq = tf.reduce_sum(tf.square(f), axis=-1, keepdims=True)
        positive = sq > 0.0
        norm = tf.where(positive, tf.sqrt(tf.where(positive, sq, 1.0)), 0.0)
        return f / (norm + self.epsilon)

    def _check_shapes(self, x, y):
        if x.shape.rank is not None and y.shape.rank is not None and (
                not x.shape[1:].is_compatible_with(y.shape[1:])):
            raise ValueError(
                "PerceptualDistance: the two image batches differ in shape. "
                f"Received: y_true.shape={tuple(x.shape)}, "
                f"y_pred.shape={tuple(y.shape)}")
        if x.shape.rank is not None:
            self.check_input_shape(tuple(x.shape[1:]), x.shape[0])

    def check_input_shape(self, data, batch=None):
        """Raises a `ValueError` naming `feature_model` if images of shape
        `data` (no batch axis; None for unknown sizes; `batch` only for the
        message) do not fit the feature model's input."""
        data = tuple(data)
        expected = self.feature_input_shape
        if expected is None:
            return
        fits = len(data) == len(expected) and all(
            e is None or d is None or e == d for e, d in zip(expected, data))
        if not fits:
            raise ValueError(
                "PerceptualDistance: the `feature_model` takes inputs of "
                f"shape {(None,) + expected}, which does not fit the data of "
                f"shape {(batch,) + data}. Build the feature model for the "
                "data's shape (e.g. `vgg16_lpips_features(input_shape="
                f"{data})`) or with None spatial dimensions. Received: "
                f"feature_model.input_shape={(None,) + expected}, "
                f"data shape={(batch,) + data}")


def _output_channels(model):
    """Channels of each feature output, or None if the model does not say."""
    outputs = getattr(model, "outputs", None)
    if not outputs:
        return None
    return [o.shape[-1] for o in keras.tree.flatten(outputs)]


def _check_weights(weights, channels):
    if weights is None:
        return None
    expected = ("None, or a list of non-negative per-channel weight vectors, "
                "one per feature output")
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__"):
        raise v.invalid("weights", expected, weights)
    checked = []
    for k, w in enumerate(weights):
        try:
            w = np.asarray(w, dtype="float32")
        except (TypeError, ValueError):
            raise v.invalid("weights", expected, weights) from None
        if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise v.invalid("weights", expected + f" (vector {k} is not)",
                            weights)
        checked.append(w)
    if channels is not None:
        if len(checked) != len(channels):
            raise v.invalid(
                "weights", f"{len(channels)} vectors, one per feature output "
                "of `feature_model`", weights)
        for k, (w, c) in enumerate(zip(checked, channels)):
            if c is not None and len(w) != c:
                raise v.invalid(
                    "weights", f"vector {k} of length {c} (the channels of "
                    f"feature output {k}), not {len(w)}", weights)
    return checked
