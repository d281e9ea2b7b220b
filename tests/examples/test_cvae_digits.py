"""Smoke test of the conditional VAE example (examples/cvae_digits.py),
its `main(argv)` run in the test process (no second interpreter and
TensorFlow import)."""

import json
import os
import re

import keras
import matplotlib.image
import numpy as np
import pytest

import keras_vae

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_quick_run_learns_the_condition_and_writes_the_grid(
        tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    from cvae_digits import main

    main(["--quick", "--out", str(tmp_path), "--seed", "0"])
    stdout = capsys.readouterr().out
    match = re.search(r"Test log-likelihood log p\(x\|y\) \(K=\d+\): "
                      r"(\S+) nats", stdout)
    assert match, stdout[-2000:]
    log_px = float(match.group(1))
    assert np.isfinite(log_px) and log_px < 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert abs(results["test_log_likelihood"] - log_px) < 0.01  # printed .2f
    # log p(x|y) estimate >= ELBO on average (Jensen), up to Monte Carlo noise.
    assert results["test_log_likelihood"] > results["test_elbo"] - 0.5

    # The condition works: generated digits are classified as the class
    # they were generated for. Quick mode measured 0.995-1.000 (seeds 0-3,
    # every class >= 0.96); chance is 0.1.
    assert results["conditional_accuracy"] > 0.8, results
    assert min(results["conditional_accuracy_per_class"]) > 0.5, results

    # The PNG: 10 rows (classes) x 10 columns of 8x8 tiles, 1 grey pixel
    # between tiles, zoomed 4x, dark ink (gray_r: intensity = 1 - mean).
    grid = results["grid"]
    rows, cols, pad, zoom = (grid[k] for k in ("rows", "columns", "pad", "zoom"))
    assert (rows, cols, pad) == (10, 10, 1)
    png = matplotlib.image.imread(tmp_path / "samples_by_class.png")
    step = 8 + pad
    assert png.shape[:2] == ((rows * step + pad) * zoom, (cols * step + pad) * zoom)
    canvas = 1.0 - png[::zoom, ::zoom, 0]  # back to pixel means in [0, 1]
    np.testing.assert_allclose(canvas[::step, :], 0.25, atol=0.01)
    np.testing.assert_allclose(canvas[:, ::step], 0.25, atol=0.01)

    # The saved model loads and its samples are the PNG's rows, so the
    # grid shows sample(n, condition=onehot(c), seed) for class c.
    vae = keras.saving.load_model(tmp_path / "cvae.keras", safe_mode=True)
    assert isinstance(vae, keras_vae.VAEModel) and len(vae.inputs) == 2
    for c in (0, 7):
        samples = vae.sample(cols, condition=np.eye(10)[[c]], seed=0)
        band = canvas[pad + c * step:(c + 1) * step, pad:]  # 8 rows of tiles
        tiles = band.reshape(8, cols, step)[:, :, :8]  # drop the padding
        tiles = tiles.transpose(1, 0, 2).reshape(cols, 64)
        np.testing.assert_allclose(tiles, samples, atol=0.01)
