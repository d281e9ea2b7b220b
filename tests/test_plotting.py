"""keras_vae.plotting: grids are checked pixel by pixel, the model pictures
against the public VAEModel API (posterior_mode, decode, likelihood.mean,
reconstruct)."""

import ast
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_vae
from keras_vae import plotting
from keras_vae.losses import BernoulliNLL

RNG = np.random.default_rng(0)
X = (RNG.uniform(size=(64, 16)) < 0.5).astype("float32")  # flat 4x4 images


@pytest.fixture(scope="module")
def vae():
    """Flat 4x4 binary images -> latent 2 -> Bernoulli logits, trained a
    few steps."""
    keras.utils.set_random_seed(0)
    x_in = keras.Input((16,))
    h = keras.layers.Dense(8, activation="tanh")(x_in)
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(h))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    model = keras_vae.VAEModel(x_in, keras.layers.Dense(16)(z))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL(),
                  jit_compile=False)
    model.fit(X, batch_size=32, epochs=2, verbose=0)
    return model


def tile(grid, row, col, size=4):
    top, left = 1 + row * (size + 1), 1 + col * (size + 1)
    return grid[top:top + size, left:left + size]


def decoded(vae, z):
    return np.asarray(vae.likelihood.mean(vae.decode(z))).reshape(-1, 4, 4)


# ------------------------------------------------------------ image_grid
def test_image_grid_tiles_row_major_with_padding():
    images = np.arange(5 * 2 * 3, dtype="float32").reshape(5, 2, 3) / 30.0
    grid = plotting.image_grid(images, ncols=3, pad=1, pad_value=0.25)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1)  # grey: 2-D
    for i in range(5):
        r, c = divmod(i, 3)
        top, left = 1 + 3 * r, 1 + 4 * c
        np.testing.assert_array_equal(grid[top:top + 2, left:left + 3],
                                      images[i])
    assert np.all(grid[0] == 0.25) and np.all(grid[:, 4] == 0.25)
    np.testing.assert_array_equal(grid[4:6, 9:12], 0.25)  # no 6th image
    # At most N columns; pad=0 packs the tiles.
    assert plotting.image_grid(images[:2], ncols=8, pad=0).shape == (2, 6)


def test_image_grid_rgb_flat_value_range_and_clipping():
    rgb = RNG.uniform(size=(4, 2, 2, 3)).astype("float32")
    grid = plotting.image_grid(rgb, ncols=2)
    assert grid.shape == (7, 7, 3)
    np.testing.assert_array_equal(grid[4:6, 4:6], rgb[3])
    # Flat data with image_shape, (H, W) or (H, W, C).
    flat = rgb.reshape(4, 12)
    np.testing.assert_array_equal(
        plotting.image_grid(flat, ncols=2, image_shape=(2, 2, 3)), grid)
    assert plotting.image_grid(flat, ncols=2, image_shape=(3, 4)).shape == (
        9, 11)
    # value_range maps to [0, 1]; outside it and NaN are clipped / 0.
    levels = np.array([[[0.0, 127.5, 255.0, 300.0, -3.0, np.nan]]])
    grid = plotting.image_grid(levels, pad=0, value_range=(0, 255))
    np.testing.assert_allclose(grid, [[0.0, 0.5, 1.0, 1.0, 0.0, 0.0]])


@pytest.mark.parametrize("kwargs, argument", [
    ({"images": np.zeros((3, 16))}, "images"),            # flat
    ({"images": np.zeros((3, 4, 4, 2))}, "images"),       # 2 channels
    ({"images": np.zeros(16)}, "images"),
    ({"images": "pictures"}, "images"),
    ({"image_shape": (5, 3)}, "image_shape"),             # 15 != 16
    ({"image_shape": (4, 4, 4)}, "image_shape"),
    ({"ncols": 0}, "ncols"),
    ({"pad": -1}, "pad"),
    ({"pad_value": 2.0}, "pad_value"),
    ({"value_range": (0, 0)}, "value_range"),
])
def test_image_grid_bad_arguments(kwargs, argument):
    args = {"images": np.zeros((3, 4, 4)), **kwargs}
    with pytest.raises(ValueError, match=f"argument `{argument}`. Expected"):
        plotting.image_grid(**args)


# ------------------------------------------------------------ matplotlib
def test_save_grid_writes_the_picture(tmp_path):
    import matplotlib.figure
    import matplotlib.image

    images = RNG.uniform(size=(6, 4, 4)).astype("float32")
    path = tmp_path / "grid.png"
    fig = plotting.save_grid(images, path, ncols=3, title="six")
    assert isinstance(fig, matplotlib.figure.Figure)
    assert fig.axes[0].get_title() == "six"
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(shown, plotting.image_grid(images, ncols=3))
    picture = matplotlib.image.imread(path)
    assert picture.shape[0] >= 2 * 80 and picture.shape[1] >= 3 * 80
    plotting.save_grid(images.reshape(6, 16), str(tmp_path / "flat.png"),
                       image_shape=(4, 4))
    assert (tmp_path / "flat.png").stat().st_size > 0
    with pytest.raises(ValueError, match="argument `path`"):
        plotting.save_grid(images, 3)


def test_matplotlib_is_imported_lazily(monkeypatch):
    # No top-level import of matplotlib in the module ...
    tree = ast.parse(Path(plotting.__file__).read_text(encoding="utf-8"))
    top = [alias.name for node in tree.body
           if isinstance(node, (ast.Import, ast.ImportFrom))
           for alias in node.names] + [
        node.module for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module]
    assert not [name for name in top if "matplotlib" in name]
    # ... and without matplotlib, the drawing functions say what to install
    # while the array ones work.
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    images = np.zeros((2, 4, 4))
    assert plotting.image_grid(images).shape == (6, 11)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plotting.save_grid(images, "never.png")


# ---------------------------------------------------------- model pictures
def test_latent_traversal(vae):
    values = np.linspace(-3, 3, 9)
    grid = plotting.latent_traversal(vae, X[:1], image_shape=(4, 4))
    assert grid.shape == (2 * 5 + 1, 9 * 5 + 1)  # 2 latent rows x 9 values
    z = vae.posterior_mode(X[:1])
    for d in range(2):
        zs = np.repeat(z, 9, axis=0)
        zs[:, d] = values
        means = decoded(vae, zs)
        for j in range(9):
            np.testing.assert_allclose(tile(grid, d, j), means[j], atol=1e-6)
    # The other dimension keeps the example's value: the middle column of
    # row d decodes z with z_d = 0.
    z0 = z.copy()
    z0[0, 1] = 0.0
    np.testing.assert_allclose(tile(grid, 1, 4), decoded(vae, z0)[0],
                               atol=1e-6)
    # Chosen dims and values.
    grid = plotting.latent_traversal(vae, X[:1], dims=[1], values=[0.0, 2.0],
                                     image_shape=(4, 4))
    assert grid.shape == (6, 11)
    z2 = z.copy()
    z2[0, 1] = 2.0
    np.testing.assert_allclose(tile(grid, 0, 1), decoded(vae, z2)[0],
                               atol=1e-6)


def test_latent_traversal_bad_arguments(vae):
    with pytest.raises(ValueError, match="argument `x`. Expected one example"):
        plotting.latent_traversal(vae, X[:2], image_shape=(4, 4))
    with pytest.raises(ValueError, match=r"argument `dims`. Expected latent "
                                         r"dimensions in \[0, 2\)"):
        plotting.latent_traversal(vae, X[:1], dims=[2], image_shape=(4, 4))
    with pytest.raises(ValueError, match="argument `values`"):
        plotting.latent_traversal(vae, X[:1], values=[], image_shape=(4, 4))
    with pytest.raises(ValueError, match=r"argument `image_shape`. Expected "
                                         r"\(H, W\) or \(H, W, C\): the "
                                         r"decoded images are flat"):
        plotting.latent_traversal(vae, X[:1])


def test_interpolation_endpoints_are_the_reconstructions(vae):
    x_a, x_b = X[:3], X[3:6]
    grid = plotting.interpolation(vae, x_a, x_b, steps=5, image_shape=(4, 4))
    assert grid.shape == (3 * 5 + 1, 5 * 5 + 1)  # 3 pairs x 5 steps
    recon_a = vae.reconstruct(x_a).reshape(-1, 4, 4)
    recon_b = vae.reconstruct(x_b).reshape(-1, 4, 4)
    z_a, z_b = vae.posterior_mode(x_a), vae.posterior_mode(x_b)
    for i in range(3):
        np.testing.assert_allclose(tile(grid, i, 0), recon_a[i], atol=1e-6)
        np.testing.assert_allclose(tile(grid, i, 4), recon_b[i], atol=1e-6)
        mid = decoded(vae, (z_a[i:i + 1] + z_b[i:i + 1]) / 2)[0]
        np.testing.assert_allclose(tile(grid, i, 2), mid, atol=1e-6)
    with pytest.raises(ValueError, match="argument `steps`"):
        plotting.interpolation(vae, x_a, x_b, steps=1, image_shape=(4, 4))
    with pytest.raises(ValueError, match="argument `x_b`. Expected as many"):
        plotting.interpolation(vae, x_a, X[:2], image_shape=(4, 4))


def test_latent_map(vae, tmp_path):
    labels = np.arange(len(X)) % 3
    fig = plotting.latent_map(vae, X, labels, path=tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 0
    ax = fig.axes[0]
    # One scatter per class, at the posterior means of its examples.
    z = vae.posterior_mode(X)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "0", "1", "2"]
    for c, points in enumerate(ax.collections):
        np.testing.assert_allclose(points.get_offsets(), z[labels == c],
                                   atol=1e-6)
    assert ax.get_xlabel() == "z[0]" and ax.get_ylabel() == "z[1]"
    # Continuous labels: one scatter and a colorbar; dims swapped.
    fig = plotting.latent_map(vae, X, np.linspace(0, 1, len(X)),
                              dims=(1, 0))
    assert len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(),
                               z[:, ::-1], atol=1e-6)
    assert len(plotting.latent_map(vae, X, None).axes[0].collections) == 1
    with pytest.raises(ValueError, match="argument `dims`"):
        plotting.latent_map(vae, X, labels, dims=(0, 2))
    with pytest.raises(ValueError, match="argument `labels`"):
        plotting.latent_map(vae, X, labels[:5])
