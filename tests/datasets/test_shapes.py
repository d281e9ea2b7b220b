"""keras_vae.datasets.Shapes / load_shapes: shapes and dtypes, the factor
grid, determinism, and what each factor does to the picture (the centre of
mass follows the position, the pixel count the scale, the outline the
shape, the rotation the orientation)."""

import time

import numpy as np
import pytest

from keras_vae.datasets import Shapes, load_shapes

BASE = np.array([2, 3, 5, 16, 16])  # heart, mid scale, mid position


def centre_of_mass(images):
    """(x, y) of each image, in pixels from the top left."""
    ink = images[..., 0]
    count = ink.sum(axis=(1, 2))
    grid = np.arange(ink.shape[1]) + 0.5
    return ((ink.sum(1) * grid).sum(1) / count,
            (ink.sum(2) * grid).sum(1) / count)


def vary(column, values, base=BASE):
    factors = np.tile(base, (len(values), 1))
    factors[:, column] = values
    return factors


def test_load_shapes_shapes_dtypes_and_seed():
    images, factors = load_shapes(50, image_size=32, seed=3)
    assert images.shape == (50, 32, 32, 1) and images.dtype == np.float32
    assert factors.shape == (50, 5) and factors.dtype == np.int64
    assert set(np.unique(images)) == {0.0, 1.0}
    assert np.all(factors >= 0) and np.all(factors < (3, 6, 40, 32, 32))
    again, same = load_shapes(50, image_size=32, seed=3)
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(same, factors)
    assert not np.array_equal(load_shapes(50, 32, seed=4)[1], factors)
    # Each image is its factors' rendering; every image shows a shape.
    np.testing.assert_array_equal(Shapes(32).render(factors), images)
    assert images.sum(axis=(1, 2, 3)).min() > 0
    assert load_shapes(2)[0].shape == (2, 64, 64, 1)  # dSprites' size


def test_factor_grid_defaults_and_options():
    shapes = Shapes()
    assert shapes.factor_names == ("shape", "scale", "orientation",
                                   "position_x", "position_y")
    assert shapes.factor_sizes == (3, 6, 40, 32, 32)  # dSprites' grid
    assert shapes.num_factors == 5
    assert shapes.observation_shape == (64, 64, 1)
    small = Shapes(image_size=16, shapes=("triangle", "square"),
                   num_scales=2, num_orientations=4, num_x=3, num_y=5)
    assert small.factor_sizes == (2, 2, 4, 3, 5)
    factors = small.sample_factors(2000, np.random.default_rng(0))
    for j, size in enumerate(small.factor_sizes):  # uniform over the grid
        counts = np.bincount(factors[:, j], minlength=size)
        assert len(counts) == size
        np.testing.assert_allclose(counts / 2000, 1 / size, atol=0.05)
    values = Shapes().factor_values([[0, 5, 10, 0, 31]])
    np.testing.assert_allclose(
        values, [[0, 1.0, np.pi / 2, 0.18 * np.sqrt(2),
                  1 - 0.18 * np.sqrt(2)]])


def test_render_is_deterministic_and_is_the_sampler_observation():
    shapes = Shapes(image_size=32)
    factors = shapes.sample_factors(20, 0)
    images = shapes.render(factors)
    np.testing.assert_array_equal(shapes.render(factors), images)
    np.testing.assert_array_equal(
        shapes.sample_observations_from_factors(factors,
                                                np.random.default_rng(9)),
        images)
    # One image alone is drawn as in a batch; float factors are accepted.
    np.testing.assert_array_equal(shapes.render(factors[3:4].astype(float)),
                                  images[3:4])


@pytest.mark.parametrize("column, value", [(0, 1), (1, 4), (2, 6), (3, 17),
                                           (4, 17)])
def test_each_factor_changes_the_image(column, value):
    # One step of any factor (from the heart, scale 3, orientation 5, x
    # and y 16) changes the 64 x 64 picture.
    shapes = Shapes(image_size=64)
    base = shapes.render(BASE[None])
    changed = shapes.render(vary(column, [value]))
    assert np.sum(base != changed) > 0


def test_position_moves_the_centre_of_mass_monotonically():
    # From position 0 to 1 the centre travels (1 - 2 · 0.18√2) of the side.
    for image_size in (32, 64):
        shapes = Shapes(image_size=image_size)
        travel = (1 - 2 * 0.18 * np.sqrt(2)) * image_size
        for shape in range(3):
            base = np.array([shape, 5, 7, 16, 16])
            for column, axis in ((3, 0), (4, 1)):  # position_x, position_y
                com = centre_of_mass(
                    shapes.render(vary(column, np.arange(32), base)))
                moved, other = com[axis], com[1 - axis]
                assert np.all(np.diff(moved) >= 0), (image_size, shape,
                                                     column)
                # At 64 pixels every step of position moves the picture.
                if image_size == 64:
                    assert np.all(np.diff(moved) > 0), (shape, column)
                assert moved[-1] - moved[0] == pytest.approx(travel, abs=1.0)
                # The other coordinate stays put, up to the rasterisation
                # of the rotated outline.
                assert np.ptp(other) < 0.5


def test_scale_changes_the_pixel_count_monotonically():
    shapes = Shapes(image_size=64, shapes=("square", "ellipse", "heart",
                                           "triangle"))
    for shape in range(4):
        for orientation in (0, 7):
            images = shapes.render(vary(1, np.arange(6),
                                        [shape, 0, orientation, 16, 16]))
            counts = images.sum(axis=(1, 2, 3))
            assert np.all(np.diff(counts) > 0), (shape, counts)
    # The unrotated square: (2 · 0.18 · scale · 64)² pixels, to a row.
    square = shapes.render(vary(1, [0, 5], [0, 0, 0, 16, 16]))
    side = 2 * 0.18 * np.array([0.5, 1.0]) * 64
    np.testing.assert_allclose(square.sum(axis=(1, 2, 3)), side ** 2,
                               atol=2 * side.max() + 1)


def test_shape_and_orientation_change_the_outline_not_the_area():
    shapes = Shapes(image_size=64)
    outlines = shapes.render(vary(0, [0, 1, 2]))
    assert len({o.tobytes() for o in outlines}) == 3
    # The square at orientation 0 is centred on its centre.
    x, y = centre_of_mass(shapes.render([[0, 5, 0, 10, 20]]))
    centre = Shapes().factor_values([[0, 5, 0, 10, 20]])[0, 3:] * 64
    np.testing.assert_allclose([x[0], y[0]], centre, atol=0.5)
    # A rotation turns the heart (no symmetry) into 40 distinct pictures of
    # about the same area; a quarter turn maps the square onto itself.
    turns = shapes.render(vary(2, np.arange(40)))
    assert len({t.tobytes() for t in turns}) == 40
    counts = turns.sum(axis=(1, 2, 3))
    assert np.ptp(counts) < 0.1 * counts.mean()
    square = shapes.render(vary(2, [0, 10], [0, 5, 0, 16, 16]))
    np.testing.assert_array_equal(square[0], square[1])


def test_rendering_is_fast():
    shapes = Shapes(image_size=32)
    factors = shapes.sample_factors(10_000, 0)
    start = time.perf_counter()
    shapes.render(factors)
    assert time.perf_counter() - start < 5.0  # ~0.9 s on 2 cores


@pytest.mark.parametrize("kwargs, argument, match", [
    ({"image_size": 4}, "image_size", r"an integer >= 8"),
    ({"image_size": 32.0}, "image_size", r"positive integer"),
    ({"shapes": ("square", "circle")}, "shapes", r"distinct names"),
    ({"shapes": "square"}, "shapes", r"distinct names"),
    ({"shapes": ("square", "square")}, "shapes", r"distinct names"),
    ({"num_x": 0}, "num_x", r"positive integer"),
    ({"scale_range": (0.0, 1.0)}, "scale_range", r"0 < low <= high <= 1"),
    ({"scale_range": 1.0}, "scale_range", r"a pair"),
])
def test_bad_options_name_the_argument(kwargs, argument, match):
    with pytest.raises(ValueError, match=rf"argument `{argument}`.*{match}"):
        Shapes(**kwargs)


@pytest.mark.parametrize("factors, match", [
    (np.zeros((3, 4), int), r"factors.shape=\(3, 4\)"),
    (np.zeros(5, int), r"factors.shape=\(5,\)"),
    ([[0, 0, 40, 0, 0]], r"factors\[0, 2\]=40 \(orientation has 40 values\)"),
    ([[0, -1, 0, 0, 0]], r"factors\[0, 1\]=-1"),
    ([[0, 0, 0, 0.5, 0]], r"factors\[0, 3\]=0.5"),
    ([[0, 0, 0, np.nan, 0]], r"factors\[0, 3\]=nan"),
])
def test_bad_factors_name_the_entry(factors, match):
    with pytest.raises(ValueError, match=rf"argument `factors`.*{match}"):
        Shapes(image_size=16).render(factors)


def test_bad_load_and_sample_arguments():
    with pytest.raises(ValueError, match=r"argument `num_examples`"):
        load_shapes(0)
    with pytest.raises(ValueError, match=r"argument `seed`"):
        load_shapes(3, seed="a")
    with pytest.raises(ValueError, match=r"argument `num`.*Received: num=-2"):
        Shapes().sample_factors(-2)
