"""Smoke test of the main example (the README's first command)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_quick_run_writes_results_pictures_and_saved_model(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "mnist_vae.py"),
         "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Test log-likelihood" in proc.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test_log_likelihood"] < 0
    # log p(x) estimate >= ELBO on average (Jensen), up to Monte Carlo noise.
    assert results["test_log_likelihood"] > results["test_elbo"] - 0.5
    for name in ("samples.png", "reconstructions.png", "interpolation.png",
                 "vae.keras", "saved_model/saved_model.pb"):
        assert (tmp_path / name).exists(), name
