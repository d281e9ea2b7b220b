"""Image arrays for pictures of a VAE: checks, shapes, value ranges, tiles.

Shared by `keras_vae.plotting` and `keras_vae.callbacks.TensorBoardImages`
(NumPy only; no matplotlib).
"""

import math
import numbers

import numpy as np

from keras_vae import _validation as v

IMAGES_EXPECTED = (
    "images (N, H, W, C) with C 1 or 3, grey images (N, H, W), or flat "
    "data (N, D) with `image_shape=(H, W)` or `(H, W, C)`"
)


# ------------------------------------------------------------ arrays
def invalid_array(name, expected, array):
    """The Keras-template error for an array argument (its shape shown)."""
    return ValueError(
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}.shape={tuple(np.shape(array))}"
    )


def check_image_shape(image_shape):
    """`image_shape` as a tuple `(H, W)` or `(H, W, C)`, C in {1, 3}, or None."""
    if image_shape is None:
        return None
    expected = ("(height, width) or (height, width, channels) with positive "
                "sizes and 1 or 3 channels")
    try:
        shape = tuple(image_shape)
    except TypeError:
        raise v.invalid("image_shape", expected, image_shape) from None
    if len(shape) not in (2, 3) or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0
        for d in shape
    ) or (len(shape) == 3 and shape[2] not in (1, 3)):
        raise v.invalid("image_shape", expected, image_shape)
    return tuple(int(d) for d in shape)


def check_value_range(value_range):
    expected = "a pair (low, high) of finite floats with low < high"
    try:
        low, high = (float(b) for b in value_range)
    except (TypeError, ValueError):
        raise v.invalid("value_range", expected, value_range) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise v.invalid("value_range", expected, value_range)
    return low, high


def as_images(images, image_shape=None, name="images"):
    """`images` as float32 `(N, H, W, C)`, C in {1, 3}.

    `image_shape` (already checked) reshapes each example; without it the
    array must be image-shaped: rank 4 with 1 or 3 channels, or rank 3
    (grey, a channel axis is added).
    """
    try:
        array = np.asarray(images, dtype="float32")
    except (TypeError, ValueError):
        raise v.invalid(name, IMAGES_EXPECTED,
                        type(images).__name__) from None
    if array.ndim < 2 or len(array) == 0:
        raise invalid_array(name, IMAGES_EXPECTED + ", at least one",
                             array)
    if image_shape is not None:
        size = int(np.prod(array.shape[1:]))
        if int(np.prod(image_shape)) != size:
            raise ValueError(
                "Invalid value received for argument `image_shape`. "
                f"Expected a shape of {size} values, the size of one example "
                f"of `{name}` (shape {tuple(array.shape)}). Received: "
                f"image_shape={image_shape}"
            )
        array = array.reshape((len(array),) + tuple(image_shape))
        if len(image_shape) == 2:
            array = array[..., None]
        return array
    if array.ndim == 2:
        side = math.isqrt(array.shape[1])
        hint = (f" (e.g. image_shape=({side}, {side}))"
                if side * side == array.shape[1] else "")
        raise invalid_array(name, IMAGES_EXPECTED + hint, array)
    if array.ndim == 3:
        return array[..., None]
    if array.ndim == 4 and array.shape[-1] in (1, 3):
        return array
    raise invalid_array(name, IMAGES_EXPECTED, array)


def to_unit(images, value_range):
    """Maps `value_range` to [0, 1], clips, NaN -> 0 (for display)."""
    low, high = value_range
    unit = (images - low) / (high - low)
    return np.clip(np.nan_to_num(unit, nan=0.0), 0.0, 1.0).astype("float32")


def tile_rows(rows, ncols, pad, pad_value):
    """Tiles rows of `(k, H, W, C)` images (k <= ncols) into one canvas
    `(rows·(H + pad) + pad, ncols·(W + pad) + pad, C)`; a short row is
    completed with `pad_value`."""
    _, height, width, channels = rows[0].shape
    step_h, step_w = height + pad, width + pad
    canvas = np.full((len(rows) * step_h + pad, ncols * step_w + pad,
                      channels), pad_value, dtype="float32")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = pad + r * step_h, pad + c * step_w
            canvas[top:top + height, left:left + width] = image
    return canvas
