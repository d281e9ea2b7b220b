"""A dSprites-like dataset rendered in code: binary images of a shape with
five known factors of variation.

```none
factor        values (default grid)                  what it sets
shape         0 square, 1 ellipse, 2 heart  (3)      the outline
scale         0.5 ... 1 in 6 steps                   the size
orientation   0 ... 2π (39/40 of it) in 40 steps     rotation about the centre
position_x    0 ... 1 in 32 steps                    the centre, left -> right
position_y    0 ... 1 in 32 steps                    the centre, top -> bottom
```

The grid is dSprites' (Matthey et al. 2017): 3 × 6 × 40 × 32 × 32 =
737,280 images, here of any size (64 × 64 by default; 32 × 32 is enough
for quick runs) and drawn on demand, with no download.
"""

import numpy as np

from keras_vae import _validation as v

SHAPES = ("square", "ellipse", "heart", "triangle")  # the outlines on offer

FACTOR_NAMES = ("shape", "scale", "orientation", "position_x", "position_y")

# A shape of scale 1 reaches this far from its centre, as a fraction of the
# image side, in its widest direction (the square's corner); the centres
# keep that far from the border so that every shape stays whole.
_SIZE = 0.18
_REACH = _SIZE * np.sqrt(2.0)
# Images drawn per NumPy pass (memory only).
_CHUNK = 1024


def _inside(shape, x, y):
    """Mask of points (x, y), in units of the shape's half size, rotated
    into the shape's frame (y up), that lie inside `shape`."""
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) <= 1.0
    if shape == "ellipse":  # 2:1, so that its rotation shows
        return x * x + (2.0 * y) ** 2 <= 1.0
    if shape == "heart":  # (x² + y² - 1)³ - x² y³ <= 0, point down
        hx, hy = 1.2 * x, 1.2 * y + 0.15
        r = hx * hx + hy * hy - 1.0
        return r * r * r - hx * hx * hy * hy * hy <= 0.0
    # triangle: equilateral, inscribed in the unit circle, point up
    return ((y >= -0.5) & (np.sqrt(3.0) * x + y <= 1.0)
            & (-np.sqrt(3.0) * x + y <= 1.0))


class Shapes:
    """Binary images of a shape with known factors (a dSprites-like
    ground-truth dataset), rendered with NumPy.

    Each image shows one white shape on black. Its five factors, in the
    order of `factor_names`, index a grid of values:

    ```none
    shape        index into `shapes` (square, ellipse, heart by default)
    scale        linspace(*scale_range, num_scales): half-size 0.18·scale
                 of the image side (the square's half side, the ellipse's
                 half long axis)
    orientation  2π·k / num_orientations, counter-clockwise
    position_x   linspace(0, 1, num_x): the centre from left to right,
                 over [0.255, 0.745] of the width (every shape stays whole)
    position_y   linspace(0, 1, num_y): the centre from top to bottom
    ```

    A pixel is 1 when its centre lies inside the rotated, scaled, shifted
    outline, so small images show coarse steps: at 32 × 32 two
    neighbouring positions are half a pixel apart and may draw the same
    image. The square repeats itself every quarter turn and the ellipse
    every half turn (as in dSprites), so their orientation is only known
    up to that symmetry.

    It is a sampler for `keras_vae.disentanglement.factor_vae_score` and
    `beta_vae_score`: `sample_factors` and
    `sample_observations_from_factors` as disentanglement_lib's
    `GroundTruthData` (with a `np.random.Generator` for its
    `RandomState`).

    Args:
        image_size: int >= 8, the height and width in pixels.
        shapes: a sequence of distinct names from `"square"`, `"ellipse"`,
            `"heart"`, `"triangle"` (dSprites' three by default).
        num_scales, num_orientations, num_x, num_y: positive ints, the
            grid sizes of the factors (dSprites': 6, 40, 32, 32).
        scale_range: `(low, high)` with 0 < low <= high <= 1, the smallest
            and largest scale.

    Example:

    ```python
    shapes = keras_vae.datasets.Shapes(image_size=32)
    factors = shapes.sample_factors(16, np.random.default_rng(0))
    images = shapes.render(factors)  # (16, 32, 32, 1) float32 in {0, 1}
    ```
    """

    def __init__(self, image_size=64, shapes=SHAPES[:3], num_scales=6,
                 num_orientations=40, num_x=32, num_y=32,
                 scale_range=(0.5, 1.0)):
        self.image_size = v.check_positive_int("image_size", image_size)
        if self.image_size < 8:
            raise v.invalid("image_size", "an integer >= 8", image_size)
        expected = f"a sequence of distinct names from {list(SHAPES)}"
        if isinstance(shapes, str):
            raise v.invalid("shapes", expected, shapes)
        try:
            names = tuple(shapes)
        except TypeError:
            raise v.invalid("shapes", expected, shapes) from None
        if (not names or len(set(names)) != len(names)
                or any(name not in SHAPES for name in names)):
            raise v.invalid("shapes", expected, shapes)
        self.shapes = names
        self.num_scales = v.check_positive_int("num_scales", num_scales)
        self.num_orientations = v.check_positive_int("num_orientations",
                                                     num_orientations)
        self.num_x = v.check_positive_int("num_x", num_x)
        self.num_y = v.check_positive_int("num_y", num_y)
        expected = "a pair (low, high) with 0 < low <= high <= 1"
        try:
            low, high = (float(b) for b in scale_range)
        except (TypeError, ValueError):
            raise v.invalid("scale_range", expected, scale_range) from None
        if not 0.0 < low <= high <= 1.0:
            raise v.invalid("scale_range", expected, scale_range)
        self.scale_range = (low, high)

    @property
    def factor_names(self):
        """The names of the five factors, in column order."""
        return FACTOR_NAMES

    @property
    def factor_sizes(self):
        """The number of values of each factor, in column order."""
        return (len(self.shapes), self.num_scales, self.num_orientations,
                self.num_x, self.num_y)

    @property
    def num_factors(self):
        """5."""
        return len(FACTOR_NAMES)

    @property
    def observation_shape(self):
        """`(image_size, image_size, 1)`."""
        return (self.image_size, self.image_size, 1)

    def factor_values(self, factors):
        """The physical values of integer `factors` `(N, 5)`: float64 `(N,
        5)` of (shape index, scale, angle in radians, centre x, centre y),
        the centre in units of the image side from the top left."""
        factors = self._check_factors(factors)
        low, high = self.scale_range
        values = np.empty(factors.shape, dtype=np.float64)
        values[:, 0] = factors[:, 0]
        values[:, 1] = np.linspace(low, high, self.num_scales)[factors[:, 1]]
        values[:, 2] = 2.0 * np.pi * factors[:, 2] / self.num_orientations
        for column, size in ((3, self.num_x), (4, self.num_y)):
            unit = np.linspace(0.0, 1.0, size)[factors[:, column]]
            values[:, column] = _REACH + unit * (1.0 - 2.0 * _REACH)
        return values

    def sample_factors(self, num, rng=None):
        """`num` factor vectors, each factor uniform over its grid: int64
        `(num, 5)`. `rng`: a `np.random.Generator`, an int seed or None."""
        num = v.check_positive_int("num", num)
        rng = np.random.default_rng(rng)
        return np.stack([rng.integers(size, size=num)
                         for size in self.factor_sizes], axis=1)

    def sample_observations_from_factors(self, factors, rng=None):
        """`render(factors)`; `rng` is not used (the images are a
        deterministic function of the factors), it is there for the
        sampler protocol."""
        del rng
        return self.render(factors)

    def render(self, factors):
        """The images of integer `factors` `(N, 5)` (each column in
        `range(factor_sizes[j])`): float32 `(N, image_size, image_size, 1)`
        of 0s and 1s. Deterministic."""
        values = self.factor_values(factors)
        size = self.image_size
        pixels = (np.arange(size, dtype=np.float32) + 0.5) / size
        images = np.zeros((len(values), size, size), dtype=np.float32)
        for start in range(0, len(values), _CHUNK):
            part = values[start:start + _CHUNK].astype(np.float32)
            # Offsets from each centre, y up, in units of the half size.
            half = (_SIZE * part[:, 1])[:, None, None]
            dx = (pixels[None, None, :] - part[:, 3, None, None]) / half
            dy = (part[:, 4, None, None] - pixels[None, :, None]) / half
            cos = np.cos(part[:, 2])[:, None, None]
            sin = np.sin(part[:, 2])[:, None, None]
            # Rotating the shape by +θ = rotating the points by -θ.
            x = cos * dx + sin * dy
            y = -sin * dx + cos * dy
            shape_of = part[:, 0].astype(np.int64)
            for index, name in enumerate(self.shapes):
                rows = np.flatnonzero(shape_of == index)
                if rows.size:
                    images[start + rows] = _inside(name, x[rows], y[rows])
        return images[..., None]

    def _check_factors(self, factors):
        expected = ("integer factors (N, 5), column j in "
                    f"range({list(self.factor_sizes)}[j])")
        try:
            array = np.asarray(factors)
        except Exception:  # noqa: BLE001 - any object numpy cannot read
            raise v.invalid("factors", expected,
                            type(factors).__name__) from None
        if (array.ndim != 2 or array.shape[1] != self.num_factors
                or not (np.issubdtype(array.dtype, np.number)
                        or array.dtype == bool)):
            raise ValueError(
                "Invalid value received for argument `factors`. Expected "
                f"{expected}. Received: factors.shape={array.shape}, "
                f"dtype={array.dtype}")
        whole = np.round(array) if array.dtype.kind == "f" else array
        sizes = np.asarray(self.factor_sizes)
        bad = ~np.isfinite(array.astype(np.float64)) | (array != whole) | (
            whole < 0) | (whole >= sizes)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                "Invalid value received for argument `factors`. Expected "
                f"{expected}. Received: factors[{row}, {col}]="
                f"{array[row, col].item()!r} ({FACTOR_NAMES[col]} has "
                f"{sizes[col].item()} values)")
        return whole.astype(np.int64)


def load_shapes(num_examples, image_size=64, seed=0):
    """A random sample of the default `Shapes` grid: `num_examples` factor
    vectors drawn uniformly (`np.random.default_rng(seed)`) and their
    images.

    Args:
        num_examples: positive int.
        image_size: int >= 8, height and width (32 for quick runs).
        seed: int or None.

    Returns:
        `(images, factors)`: float32 `(N, image_size, image_size, 1)` of 0s
        and 1s, and int64 `(N, 5)` factor indices (columns as
        `Shapes.factor_names`: shape, scale, orientation, position_x,
        position_y).

    Example:

    ```python
    images, factors = keras_vae.datasets.load_shapes(10000, image_size=32)
    ```
    """
    num_examples = v.check_positive_int("num_examples", num_examples)
    seed = v.check_seed("seed", seed)
    shapes = Shapes(image_size=image_size)
    factors = shapes.sample_factors(num_examples, np.random.default_rng(seed))
    return shapes.render(factors), factors
