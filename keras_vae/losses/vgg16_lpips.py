"""The VGG16 feature model of LPIPS, built from `keras.applications`."""

import keras

from keras_vae import _validation as v

#: The LPIPS layers of VGG16 (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3)
#: under their Keras names (Keras' conv layers carry their ReLU).
LPIPS_VGG16_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3",
                      "block4_conv3", "block5_conv3")


@keras.saving.register_keras_serializable(package="keras_vae")
class VGG16Preprocessing(keras.layers.Layer):
    """Images in `input_range` -> what Keras' VGG16 weights expect.

    ```none
    x255 = (x - low) * 255 / (high - low)
    out  = keras.applications.vgg16.preprocess_input(x255)
         = x255[..., ::-1] - (103.939, 116.779, 123.68)   (RGB -> BGR, caffe means)
    ```

    Args:
        input_range: `(low, high)`, the range of the images (LPIPS: -1, 1).
    """

    def __init__(self, input_range=(-1.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        self.input_range = _check_range(input_range)

    def call(self, images):
        low, high = self.input_range
        x255 = (keras.ops.cast(images, self.compute_dtype) - low) * (
            255.0 / (high - low))
        return keras.applications.vgg16.preprocess_input(
            x255, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "input_range": list(self.input_range)}


def vgg16_lpips_features(weights="imagenet", input_shape=(None, None, 3),
                         input_range=(-1.0, 1.0), layers=LPIPS_VGG16_LAYERS,
                         name="vgg16_lpips"):
    """The LPIPS feature model: VGG16's relu1_2 ... relu5_3, frozen.

    Builds `keras.applications.VGG16(include_top=False, weights=weights)`
    behind a `VGG16Preprocessing` layer (images in `input_range` mapped
    to 0..255, then `keras.applications.vgg16.preprocess_input`: RGB to
    BGR and the ImageNet channel means subtracted), truncated to the given
    layers, which become the model's outputs in that order. The model is
    frozen (`trainable = False`). Hand it to `PerceptualDistance`.

    Args:
        weights: `"imagenet"` (Keras downloads the ImageNet weights once,
            ~58 MB, into `~/.keras/models`), a path to a weights file, or
            None (random initialisation: for tests only, the distance is
            then not perceptual).
        input_shape: `(height, width, 3)`; None spatial dimensions take
            any size of at least 32 x 32 (the five blocks halve it four
            times before block5).
        input_range: `(low, high)`, the range of the images the model
            receives: (-1, 1) as in LPIPS, or (0, 1).
        layers: names of the VGG16 layers to output; by default LPIPS'
            relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 =
            `block1_conv2`, `block2_conv2`, `block3_conv3`, `block4_conv3`,
            `block5_conv3`.
        name: the model's name.

    Returns:
        A frozen `keras.Model`: images `(B, h, w, 3)` -> a list of feature
        maps, e.g. `(B, h, w, 64)`, `(B, h/2, w/2, 128)`, `(B, h/4, w/4,
        256)`, `(B, h/8, w/8, 512)`, `(B, h/16, w/16, 512)`.

    Example:

    ```python
    features = keras_vae.losses.vgg16_lpips_features(weights="imagenet")
    lpips = keras_vae.losses.PerceptualDistance(features)
    ```
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise v.invalid("input_shape", "(height, width, 3): VGG16 reads RGB "
                        "images", input_shape)
    if isinstance(layers, str) or not layers:
        raise v.invalid("layers", "a non-empty list of VGG16 layer names",
                        layers)
    images = keras.Input(input_shape, name="images")
    x = VGG16Preprocessing(input_range, name="vgg16_preprocessing")(images)
    vgg = keras.applications.VGG16(include_top=False, weights=weights,
                                   input_tensor=x)
    known = [layer.name for layer in vgg.layers]
    unknown = [n for n in layers if n not in known]
    if unknown:
        raise v.invalid("layers", f"names of VGG16 layers ({known[2:]})",
                        list(layers))
    model = keras.Model(images, [vgg.get_layer(n).output for n in layers],
                        name=name)
    model.trainable = False
    return model


def _check_range(input_range):
    expected = "a pair (low, high) of floats with low < high"
    try:
        low, high = (float(r) for r in input_range)
    except (TypeError, ValueError):
        raise v.invalid("input_range", expected, input_range) from None
    if not low < high:
        raise v.invalid("input_range", expected, input_range)
    return (low, high)
