"""Pictures of a trained VAEModel: image grids, latent traversals, latent
maps, interpolations.

```none
image_grid        images -> one tiled array (H', W') or (H', W', 3)
latent_traversal  z = mode of q(z | x); row d: z with z_d set to each value, decoded
interpolation     row i: decode((1 - t) z_a[i] + t z_b[i]),  t = 0 ... 1
latent_map        scatter of the posterior means, coloured by label
```

Images are `(N, H, W, C)` with C = 1 (grey) or 3 (RGB), `(N, H, W)`
(grey), or flat `(N, D)` with `image_shape=(H, W)` or `(H, W, C)`. The
decoded pictures are the likelihood's mean (`vae.likelihood.mean`, what
`reconstruct` and `sample` return), so they are in the data's units:
values are mapped from `value_range` (default `(0, 1)`) to [0, 1] and
clipped there for display (NaN shows as 0). Only the public `VAEModel` API
is used (`posterior_mode`, `decode`, `likelihood.mean`).

`image_grid`, `latent_traversal` and `interpolation` return NumPy arrays
and need only NumPy; `save_grid` and `latent_map` draw with matplotlib,
which is not a dependency of the package (`pip install matplotlib`) and is
imported only when they are called.
"""

import numbers
import os

import numpy as np

from keras_vae import _validation as v

__all__ = [
    "image_grid",
    "save_grid",
    "latent_traversal",
    "latent_map",
    "interpolation",
]

from keras_vae._images import as_images as _as_images
from keras_vae._images import check_image_shape as _check_image_shape
from keras_vae._images import check_value_range as _check_value_range
from keras_vae._images import invalid_array as _invalid_array
from keras_vae._images import tile_rows as _tile_rows
from keras_vae._images import to_unit as _to_unit


def _squeeze_grey(canvas):
    return canvas[..., 0] if canvas.shape[-1] == 1 else canvas


def _check_grid_options(ncols, pad, pad_value, value_range):
    ncols = v.check_positive_int("ncols", ncols)
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or (
            pad < 0):
        raise v.invalid("pad", "a non-negative integer", pad)
    pad_value = v.check_float("pad_value", pad_value, minimum=0.0)
    if pad_value > 1.0:
        raise v.invalid("pad_value", "a float in [0, 1]", pad_value)
    return ncols, int(pad), pad_value, _check_value_range(value_range)


def image_grid(images, ncols=8, image_shape=None, pad=1, pad_value=0.5,
               value_range=(0.0, 1.0)):
    """Tiles images into one array, `ncols` per row (row-major).

    ```none
    grid shape = (rows·(H + pad) + pad, ncols·(W + pad) + pad[, 3])
    rows       = ⌈N / ncols⌉
    ```

    Values are mapped from `value_range` to [0, 1] and clipped there (NaN
    shows as 0); tiles are separated by `pad` pixels of `pad_value`, which
    also fills an incomplete last row. Needs only NumPy.

    Args:
        images: `(N, H, W, C)` with C = 1 or 3, `(N, H, W)`, or flat
            `(N, D)` with `image_shape`.
        ncols: positive int, images per row (at most N columns are drawn).
        image_shape: `(H, W)` or `(H, W, C)` to reshape each example to
            (needed for flat data).
        pad: non-negative int, pixels between tiles and around the grid.
        pad_value: float in [0, 1], the grey level of the padding.
        value_range: `(low, high)` of the data (e.g. `(0, 255)` for
            `CategoricalNLL` levels): low shows black, high white.

    Returns:
        float32 NumPy array in [0, 1]: `(H', W')` for grey images,
        `(H', W', 3)` for RGB.

    Example:

    ```python
    grid = keras_vae.plotting.image_grid(vae.sample(16, seed=0), ncols=4,
                                         image_shape=(28, 28))
    ```
    """
    ncols, pad, pad_value, value_range = _check_grid_options(
        ncols, pad, pad_value, value_range)
    images = _to_unit(_as_images(images, _check_image_shape(image_shape)),
                      value_range)
    return _grid(images, ncols, pad, pad_value)


def _grid(images, ncols, pad=1, pad_value=0.5):
    """`image_grid` of checked `(N, H, W, C)` images in [0, 1]."""
    ncols = min(ncols, len(images))
    rows = [images[i:i + ncols] for i in range(0, len(images), ncols)]
    return _squeeze_grey(_tile_rows(rows, ncols, pad, pad_value))


# -------------------------------------------------------- matplotlib
def _matplotlib(function):
    """Imports matplotlib (not a dependency of keras_vae) for `function`."""
    try:
        import matplotlib  # noqa: F401
        import matplotlib.figure
    except ImportError as error:
        raise ImportError(
            f"keras_vae.plotting.{function} draws with matplotlib, which is "
            "not installed: pip install matplotlib"
        ) from error
    return matplotlib


def save_grid(images, path, ncols=8, title=None, image_shape=None,
              cmap="gray", pad=1, pad_value=0.5, value_range=(0.0, 1.0),
              dpi=100):
    """Writes `image_grid(images, ...)` to an image file (PNG, ...).

    Drawn on a matplotlib `Figure` of its own (pyplot's state and backend
    are not touched), at least 80 pixels per tile, nearest-neighbour, with
    `title` above it; grey images use `cmap` (`"gray_r"`: dark ink on
    white). Needs matplotlib (`pip install matplotlib`).

    Args:
        images, ncols, image_shape, pad, pad_value, value_range: as for
            `image_grid`.
        path: file to write; its extension picks the format.
        title: str or None, drawn above the grid.
        cmap: matplotlib colormap of grey images.
        dpi: dots per inch of the file.

    Returns:
        The matplotlib `Figure` (displayed by notebooks).

    Example:

    ```python
    keras_vae.plotting.save_grid(vae.sample(64, seed=0), "samples.png",
                                 ncols=8, title="prior samples",
                                 image_shape=(28, 28), cmap="gray_r")
    ```
    """
    if not isinstance(path, (str, os.PathLike)):
        raise v.invalid("path", "a file path (str or os.PathLike)", path)
    images = _as_images(images, _check_image_shape(image_shape))
    grid = image_grid(images, ncols=ncols, pad=pad, pad_value=pad_value,
                      value_range=value_range)
    mpl = _matplotlib("save_grid")
    zoom = max(1.0, 80.0 / images.shape[2])  # >= 80 pixels per tile
    width, height = grid.shape[1] * zoom / dpi, grid.shape[0] * zoom / dpi
    title_height = 0.4 if title else 0.0
    fig = mpl.figure.Figure(figsize=(width, height + title_height))
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + title_height)))
    ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig


# ------------------------------------------------------ model pictures
def _one_latent(z, function):
    if isinstance(z, list):
        raise ValueError(
            f"keras_vae.plotting.{function} needs a VAEModel with one latent; "
            f"this one has {len(z)} levels."
        )
    return np.asarray(z, dtype="float32")


def _rows(x):
    """Number of examples of `x` (an array, or a list/dict of arrays)."""
    first = next(iter(x.values())) if isinstance(x, dict) else (
        x[0] if isinstance(x, (list, tuple)) else x)
    return len(np.asarray(first))


def _decoded_grid(vae, z, condition, ncols, image_shape, value_range):
    """`image_grid` of `vae.likelihood.mean(vae.decode(z))`."""
    image_shape = _check_image_shape(image_shape)
    value_range = _check_value_range(value_range)
    means = np.asarray(vae.likelihood.mean(vae.decode(z, condition=condition)))
    if means.ndim == 2 and image_shape is None:
        raise ValueError(
            "Invalid value received for argument `image_shape`. Expected "
            "(H, W) or (H, W, C): the decoded images are flat, of shape "
            f"{means.shape}. Received: image_shape=None"
        )
    images = _as_images(means, image_shape, name="image_shape")
    return _grid(_to_unit(images, value_range), ncols)


def latent_traversal(vae, x, dims=None, values=np.linspace(-3, 3, 9),
                     image_shape=None, condition=None,
                     value_range=(0.0, 1.0)):
    """Decodes one example's latent with one dimension varied per row.

    ```none
    z = mode of q(z | x)                       (VAEModel.posterior_mode)
    row i, column j:  E[x | z with z_dims[i] = values[j]]
    ```

    The other dimensions keep the example's value. A latent of any shape is
    indexed flat (`dims` are positions in `z.reshape(-1)`). For a standard
    normal prior, ±3 covers the prior's mass.

    Args:
        vae: a compiled `VAEModel` with one latent.
        x: one example with its batch axis (`x_test[:1]`; a list for a
            model with several inputs).
        dims: latent dimensions to vary, one row each (default: all).
        values: 1-D floats each dimension is set to, one column each
            (default 9 values from -3 to 3).
        image_shape, value_range: as for `image_grid`.
        condition: the decoder's other inputs, for a conditional VAE (as
            for `VAEModel.decode`; one row is broadcast).

    Returns:
        `image_grid` of `len(dims)` rows × `len(values)` columns.

    Example:

    ```python
    grid = keras_vae.plotting.latent_traversal(vae, x_test[:1],
                                               image_shape=(28, 28))
    ```
    """
    if _rows(x) != 1:
        raise ValueError(
            "Invalid value received for argument `x`. Expected one example "
            "with its batch axis (e.g. x[:1]). Received: "
            f"{_rows(x)} examples"
        )
    values = np.asarray(values, dtype="float32")
    if values.ndim != 1 or values.size == 0 or not np.all(
            np.isfinite(values)):
        raise v.invalid("values", "a non-empty 1-D array of finite floats",
                        values)
    z = _one_latent(vae.posterior_mode(x), "latent_traversal")
    flat = z.reshape(1, -1)
    size = flat.shape[1]
    if dims is None:
        dims = list(range(size))
    else:
        given, dims = dims, [d.item() for d in np.atleast_1d(dims)]
        if not dims or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < size
            for d in dims
        ):
            raise v.invalid("dims", f"latent dimensions in [0, {size})",
                            given)
    zs = np.repeat(flat, len(dims) * len(values), axis=0)
    for i, d in enumerate(dims):
        zs[i * len(values):(i + 1) * len(values), int(d)] = values
    return _decoded_grid(vae, zs.reshape((-1,) + z.shape[1:]), condition,
                         len(values), image_shape, value_range)


def interpolation(vae, x_a, x_b, steps=8, image_shape=None, condition=None,
                  value_range=(0.0, 1.0)):
    """Decodes straight lines between the latents of pairs of examples.

    ```none
    z_a, z_b = modes of q(z | x_a), q(z | x_b)   (the posterior means of a Gaussian)
    row i, column j:  E[x | (1 - t_j) z_a[i] + t_j z_b[i]],   t_j = j / (steps - 1)
    ```

    so the first column decodes `x_a`'s latent (its reconstruction) and the
    last `x_b`'s.

    Args:
        vae: a compiled `VAEModel` with one latent.
        x_a, x_b: N examples each (lists for a model with several inputs).
        steps: int >= 2, images per row, the endpoints included.
        image_shape, value_range: as for `image_grid`.
        condition: the decoder's other inputs, for a conditional VAE: one
            row (broadcast) or N·steps rows, as for `VAEModel.decode`.

    Returns:
        `image_grid` of N rows × `steps` columns.

    Example:

    ```python
    grid = keras_vae.plotting.interpolation(vae, x_test[:4], x_test[4:8],
                                            steps=10, image_shape=(28, 28))
    ```
    """
    steps = v.check_positive_int("steps", steps)
    if steps < 2:
        raise v.invalid("steps", "an integer >= 2", steps)
    if _rows(x_a) != _rows(x_b):
        raise ValueError(
            "Invalid value received for argument `x_b`. Expected as many "
            f"examples as `x_a` ({_rows(x_a)}). Received: {_rows(x_b)} "
            "examples"
        )
    z_a = _one_latent(vae.posterior_mode(x_a), "interpolation")
    z_b = _one_latent(vae.posterior_mode(x_b), "interpolation")
    t = np.linspace(0.0, 1.0, steps, dtype="float32").reshape(
        (1, steps) + (1,) * (z_a.ndim - 1))
    z = (1.0 - t) * z_a[:, None] + t * z_b[:, None]  # (N, steps, ...)
    return _decoded_grid(vae, z.reshape((-1,) + z_a.shape[1:]), condition,
                         steps, image_shape, value_range)


def latent_map(vae, x, labels, path=None, dims=(0, 1), title=None):
    """Scatter plot of two dimensions of the posterior means of `x`.

    Each point is one example's `VAEModel.posterior_mode` (the mean `loc`
    of a Gaussian posterior; a latent of any shape is indexed flat),
    coloured by its label: a legend for up to 20 integer classes, a
    colorbar otherwise. Needs matplotlib (`pip install matplotlib`).

    Args:
        vae: a compiled `VAEModel` with one latent.
        x: examples (a list for a model with several inputs).
        labels: one label per example, or None (one colour).
        path: file to write the figure to, or None.
        dims: the two latent dimensions on the axes.
        title: str or None.

    Returns:
        The matplotlib `Figure`.

    Example:

    ```python
    fig = keras_vae.plotting.latent_map(vae, x_test, y_test,
                                        path="latent_map.png")
    ```
    """
    mpl = _matplotlib("latent_map")
    z = _one_latent(vae.posterior_mode(x), "latent_map")
    z = z.reshape(len(z), -1)
    given = dims
    dims = [d.item() for d in np.atleast_1d(dims)] if dims is not None else []
    if len(dims) != 2 or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < z.shape[1]
        for d in dims
    ):
        raise v.invalid(
            "dims", f"two latent dimensions in [0, {z.shape[1]})", given)
    points = z[:, dims]
    fig = mpl.figure.Figure(figsize=(5.0, 4.5))
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=6)
    else:
        labels = np.asarray(labels)
        if labels.shape != (len(points),):
            raise _invalid_array(
                "labels", f"one label per example of `x`, ({len(points)},)",
                labels)
        classes, codes = np.unique(labels, return_inverse=True)
        numeric = labels.dtype.kind in "iubf"
        integral = labels.dtype.kind in "iub" or (
            numeric and bool(np.all(labels == np.round(labels))))
        if (integral or not numeric) and len(classes) <= 20:
            cmap = mpl.colormaps["tab10" if len(classes) <= 10 else "tab20"]
            for i, c in enumerate(classes):
                keep = codes == i
                ax.scatter(points[keep, 0], points[keep, 1], s=6,
                           color=cmap(i), label=str(c.item()))
            ax.legend(markerscale=2, fontsize=8, loc="best")
        else:
            art = ax.scatter(
                points[:, 0], points[:, 1], s=6, cmap="viridis",
                c=labels.astype("float32") if numeric else codes)
            fig.colorbar(art, ax=ax)
    ax.set_xlabel(f"z[{int(dims[0])}]")
    ax.set_ylabel(f"z[{int(dims[1])}]")
    if title:
        ax.set_title(title)
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig
