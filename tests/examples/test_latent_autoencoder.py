"""Smoke test of examples/latent_autoencoder.py: keras_vae's latent layers
inside keras-hub's Stable-Diffusion-style VAEBackbone, on RGB patches.

The example's `main(argv)` runs in the test process (no interpreter, no
second TensorFlow and keras-hub import) with `--quick` and a smaller
backbone than its default: two levels (`--filters 32 32`, f = 2) on 8x8
patches, so the latent is still (4, 4, 4), and 32 test patches. Tracing
the backbone's train and test steps is most of the run; two levels instead
of three take about a quarter less.
"""

import json
import math
import os
import re

import matplotlib.image
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATCH = 8


@pytest.mark.slow
def test_quick_run_reports_bits_per_dim_and_writes_the_picture(
        tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    from latent_autoencoder import main

    main(["--quick", "--out", str(tmp_path), "--seed", "0", "--filters",
          "32", "32", "--patch", str(PATCH), "--test-examples", "32"])
    stdout = capsys.readouterr().out
    match = re.search(r"Summary: .* test (\S+) bits/dim \(K=\d+\), "
                      r"(\d+) epochs in (\S+) s", stdout)
    assert match, stdout[-2000:]
    bpd, epochs = float(match.group(1)), int(match.group(2))

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["backbone"].endswith("VAEBackbone")
    assert epochs == results["epochs"] == 2
    # Patches 8x8x3, 2 backbone levels (f = 2), C = 4 latent channels.
    assert results["latent_shape"] == [4, 4, 4]
    assert results["test_patches"] == 32
    assert abs(results["test_bits_per_dim"] - bpd) < 1e-3  # printed .3f
    # bits/dim is -log p(x) in nats over P * P * 3 subpixels and ln 2.
    expected = -results["test_log_likelihood"] / (
        PATCH * PATCH * 3 * math.log(2))
    assert abs(results["test_bits_per_dim"] - expected) < 1e-6
    # A discrete likelihood over 256 levels: log p(x) < 0, bits/dim > 0;
    # even two quick epochs beat the 8 bits/dim of knowing nothing.
    assert 0.0 < bpd < 8.0, results
    # log p(x) estimate >= ELBO on average (Jensen), up to Monte Carlo noise.
    assert results["test_log_likelihood"] > results["test_elbo"] - 5.0
    assert results["test_kl"] > 0

    # The picture: three panels (patches, reconstructions, samples) of RGB.
    png = matplotlib.image.imread(tmp_path / "patches.png")
    assert png.ndim == 3 and png.shape[2] in (3, 4)
    assert np.isfinite(png).all()
    assert results["reload_max_abs_diff"] < 1e-4  # vae.keras reloads
    for name in ("vae.keras", "saved_model/saved_model.pb"):
        assert (tmp_path / name).exists(), name


@pytest.mark.slow
def test_ldm_recipe_quick_run_compares_the_variants(tmp_path, monkeypatch,
                                                    capsys):
    """--recipe ldm --quick: the four variants (ELBO, L1 + KL, + perceptual,
    + PatchGAN) trained a few steps on 16x16 crops, their table, the
    picture and results.json."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    from latent_autoencoder import LDM_VARIANTS, main

    summary = main(["--recipe", "ldm", "--quick", "--out", str(tmp_path),
                    "--patch", "16", "--ldm-filters", "8", "16",
                    "--batch-size", "8", "--steps", "4",
                    "--test-examples", "16"])
    stdout = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["results"]) == set(LDM_VARIANTS)
    assert results["discriminator_start"] == 2 and results["steps"] == 4
    for variant, label in LDM_VARIANTS.items():
        r = results["results"][variant]
        assert label in stdout and label in results["table"]
        assert r["steps"] == 4 and r["train_time_s"] > 0
        assert 0.0 < r["psnr"] < 60.0 and -1.0 <= r["ssim"] <= 1.0
        assert r["frechet"] >= 0.0 and r["sharpness"] >= 0.0
        assert 0.0 < r["l1"] < 1.0  # clipped reconstructions in [0, 1]
    ratio = (results["results"]["full"]["step_ms"]
             / results["results"]["elbo"]["step_ms"])
    assert abs(results["step_time_ratio_full_vs_elbo"] - ratio) < 0.01
    assert summary["table"] == results["table"]
    png = matplotlib.image.imread(tmp_path / "ldm_recipe.png")
    assert png.ndim == 3 and np.isfinite(png).all()
