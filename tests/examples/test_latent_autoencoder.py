"""Smoke test of examples/latent_autoencoder.py: keras_vae's latent layers
inside keras-hub's Stable-Diffusion-style VAEBackbone, on RGB patches."""

import json
import math
import os
import re
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_quick_run_reports_bits_per_dim_and_writes_the_picture(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable,
         os.path.join(ROOT, "examples", "latent_autoencoder.py"),
         "--quick", "--out", str(tmp_path), "--seed", "0"],
        capture_output=True, text=True, env=env, timeout=900, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    match = re.search(r"Summary: .* test (\S+) bits/dim \(K=\d+\), "
                      r"(\d+) epochs in (\S+) s", proc.stdout)
    assert match, proc.stdout[-2000:]
    bpd, epochs = float(match.group(1)), int(match.group(2))

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["backbone"].endswith("VAEBackbone")
    assert epochs == results["epochs"] == 2
    # Patches 16x16x3, 3 backbone levels (f = 4), C = 4 latent channels.
    assert results["latent_shape"] == [4, 4, 4]
    assert abs(results["test_bits_per_dim"] - bpd) < 1e-3  # printed .3f
    # bits/dim is -log p(x) in nats over 16 * 16 * 3 subpixels and ln 2.
    expected = -results["test_log_likelihood"] / (16 * 16 * 3 * math.log(2))
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
