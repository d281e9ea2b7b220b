"""Smoke test of the imputation example (examples/impute_digits.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_quick_run_imputes_and_writes_the_pictures(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "impute_digits.py"),
         "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    for pattern in ("random 25%", "random 50%", "random 75%", "bottom half"):
        row = results[pattern]
        assert (tmp_path / f"impute_{pattern.replace(' ', '_').rstrip('%')}"
                ".png").exists()
        # Even 5 epochs beat filling in the column mean.
        assert row["VAE impute"] < row["column mean"], row
        assert np.isfinite(row["test log p(x_obs) (nats)"])
        assert row["test log p(x_obs) (nats)"] < 0
    gaps = results["complete test digits"]
    assert gaps["total_gap"] == pytest.approx(
        gaps["approximation_gap"] + gaps["amortization_gap"], abs=1e-3)
    assert "| VAE impute |" in proc.stdout
