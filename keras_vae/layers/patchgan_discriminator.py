"""PatchGANDiscriminator: images -> a map of real/fake logits per patch."""

import keras
import tensorflow as tf

from keras_vae import _validation as v

NORMALIZATIONS = ("group", "instance", "layer", "none")


@keras.saving.register_keras_serializable(package="keras_vae")
class PatchGANDiscriminator(keras.layers.Layer):
    """The PatchGAN discriminator of pix2pix and taming transformers.

    ```none
    c_i = filters * min(2**i, max_filter_multiplier)
    h = LeakyReLU(Conv(c_0, 4x4, stride 2)(pad1(x)))                   i = 0
    h = LeakyReLU(Norm(Conv(c_i, 4x4, stride 2)(pad1(h))))             i = 1 .. n-1
    h = LeakyReLU(Norm(Conv(c_n, 4x4, stride 1)(pad1(h))))             i = n
    logits = Conv(1, 4x4, stride 1)(pad1(h))                           (B, h', w', 1)
    h' = floor(... floor(H / 2) ... / 2) - 2   (n halvings, then 2 stride-1 convs)
    ```

    One logit per overlapping patch (a 70 x 70 receptive field for
    `num_layers=3`: 256 x 256 images give a 30 x 30 map, as the reference),
    LeakyReLU slope 0.2, 4 x 4 kernels with one pixel of zero padding,
    kernels initialised from N(0, 0.02), no bias before a normalisation
    (taming's `NLayerDiscriminator`, itself pix2pix's).

    **Normalisation.** The reference uses BatchNorm. Here the default is
    GroupNormalization (`normalization="group"`, 32 groups; `"instance"` and
    `"layer"` are its one-channel-per-group and one-group cases), for three
    reasons. (1) Statistics are per example: real and fake images never
    share or leak batch statistics (with BatchNorm the discriminator is
    normalised by each batch's own mean, and the reference calls it on a
    batch of reals and a batch of fakes, which the statistics alone can
    tell apart), and a batch of one behaves as a batch of many. (2) There
    are no moving statistics: training and inference compute the same
    function, and the layer has no non-trainable state to update from
    inside the autoencoder's XLA step, where the generator reads the
    discriminator through stopped weights (`stopped_logits`). (3) It is
    plain arithmetic under XLA, and Keras' GroupNormalization computes its
    moments in float32 under mixed precision. The logits are returned in
    float32 whatever the dtype policy.

    Args:
        num_layers: positive int n, the number of stride-2 convolutions
            (3 in latent diffusion and pix2pix).
        filters: positive int, channels of the first convolution (64).
        max_filter_multiplier: positive int, the cap on the doubling of
            the channels (8: 64, 128, 256, 512, 512, ...).
        normalization: `"group"` (default), `"instance"`, `"layer"` or
            `"none"` (convolutions with bias, no normalisation).
        groups: positive int, groups of `"group"` normalisation; must
            divide every normalised layer's channels (`filters * 2**i`).
        epsilon: positive float added to the variance in the normalisation.
        negative_slope: float >= 0, the LeakyReLU slope (0.2).
        kernel_initializer: of every convolution (N(0, 0.02)).

    Call arguments:
        images: `(batch, H, W, C)`.

    Input shape: `(batch, H, W, C)` with C known.

    Output shape: `(batch, h', w', 1)` float32 logits (see above).

    Example:

    ```python
    disc = keras_vae.PatchGANDiscriminator(num_layers=3, filters=64)
    logits = disc(images)                     # (B, 30, 30, 1) for 256 x 256
    d_loss = 0.5 * (tf.reduce_mean(tf.nn.relu(1 - disc(real)))
                    + tf.reduce_mean(tf.nn.relu(1 + disc(fake))))  # hinge
    ```

    References: Isola, Zhu, Zhou & Efros, "Image-to-Image Translation with
    Conditional Adversarial Networks" (pix2pix), 2017; Esser, Rombach &
    Ommer, "Taming Transformers for High-Resolution Image Synthesis", 2021;
    Wu & He, "Group Normalization", 2018.
    """

    def __init__(self, num_layers=3, filters=64, max_filter_multiplier=8,
                 normalization="group", groups=32, epsilon=1e-5,
                 negative_slope=0.2, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = v.check_positive_int("num_layers", num_layers)
        self.filters = v.check_positive_int("filters", filters)
        self.max_filter_multiplier = v.check_positive_int(
            "max_filter_multiplier", max_filter_multiplier)
        self.normalization = v.check_choice(
            "normalization", normalization, NORMALIZATIONS)
        self.groups = v.check_positive_int("groups", groups)
        self.epsilon = v.check_float("epsilon", epsilon, minimum=0.0,
                                     strict=True)
        self.negative_slope = v.check_float("negative_slope", negative_slope,
                                            minimum=0.0)
        if kernel_initializer is None:
            kernel_initializer = keras.initializers.RandomNormal(0.0, 0.02)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.channels = [
            self.filters * min(2 ** i, self.max_filter_multiplier)
            for i in range(self.num_layers + 1)
        ]
        if self.normalization == "group":
            bad = [c for c in self.channels[1:] if c % self.groups]
            if bad:
                raise v.invalid(
                    "groups", f"a divisor of every normalised layer's "
                    f"channels {self.channels[1:]}", groups)
        self.convs, self.norms = [], []
        for i, channels in enumerate(self.channels):
            normed = i > 0 and self.normalization != "none"
            self.convs.append(keras.layers.Conv2D(
                channels, 4, strides=2 if i < self.num_layers else 1,
                use_bias=not normed, kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy, name=f"conv_{i}"))
            self.norms.append(self._make_norm(channels, i) if normed else None)
        self.head = keras.layers.Conv2D(
            1, 4, kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy, name="logits")

    def _make_norm(self, channels, i):
        groups = {"group": self.groups, "instance": channels,
                  "layer": 1}[self.normalization]
        return keras.layers.GroupNormalization(
            groups=groups, epsilon=self.epsilon, dtype=self.dtype_policy,
            name=f"norm_{i}")

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "PatchGANDiscriminator expects images (batch, H, W, C) with C "
                f"known. Received: input_shape={tuple(input_shape)}")
        self._check_size(input_shape)
        shape = tuple(input_shape)
        for conv, norm in zip(self.convs, self.norms):
            shape = self._padded(shape)
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            if norm is not None:
                norm.build(shape)
        self.head.build(self._padded(shape))

    def call(self, images):
        h = images
        for conv, norm in zip(self.convs, self.norms):
            h = conv(self._pad(h))
            if norm is not None:
                h = norm(h)
            h = keras.ops.leaky_relu(h, negative_slope=self.negative_slope)
        return keras.ops.cast(self.head(self._pad(h)), "float32")

    def stopped_logits(self, images):
        """The logits with the weights read through `stop_gradient`: a
        gradient reaches the images, none reaches the discriminator (the
        generator's side of an adversarial loss in one train step)."""
        if not self.built:
            self.build(tuple(images.shape))
        trainable = [tf.stop_gradient(w) for w in self.trainable_variables]
        logits, _ = self.stateless_call(
            trainable, list(self.non_trainable_variables), images)
        return logits

    def compute_output_shape(self, input_shape):
        h, w = (self._output_size(d) for d in input_shape[1:3])
        return (input_shape[0], h, w, 1)

    def compute_output_spec(self, images):
        return keras.KerasTensor(self.compute_output_shape(images.shape),
                                 dtype="float32")

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "filters": self.filters,
            "max_filter_multiplier": self.max_filter_multiplier,
            "normalization": self.normalization,
            "groups": self.groups,
            "epsilon": self.epsilon,
            "negative_slope": self.negative_slope,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer),
        }

    # ----------------------------------------------------------- helpers
    @staticmethod
    def _pad(h):
        return keras.ops.pad(h, [[0, 0], [1, 1], [1, 1], [0, 0]])

    @staticmethod
    def _padded(shape):
        return (shape[0],) + tuple(
            None if d is None else d + 2 for d in shape[1:3]) + (shape[3],)

    def _output_size(self, size):
        if size is None:
            return None
        for _ in range(self.num_layers):
            size = (size + 2 - 4) // 2 + 1
        return size - 2

    def _check_size(self, input_shape):
        for size in input_shape[1:3]:
            if size is not None and self._output_size(size) < 1:
                raise ValueError(
                    f"PatchGANDiscriminator(num_layers={self.num_layers}) "
                    f"maps {tuple(input_shape[1:3])} images to an empty "
                    "patch map: the images need at least "
                    f"{self._min_size()} pixels a side, or use fewer "
                    f"layers. Received: input_shape={tuple(input_shape)}")

    def _min_size(self):
        size = 1
        while self._output_size(size) < 1:
            size += 1
        return size
