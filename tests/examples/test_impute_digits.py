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
    for pattern in ("random 50%", "bottom half"):  # --quick's two
        row = results[pattern]
        assert (tmp_path / f"impute_{pattern.replace(' ', '_').rstrip('%')}"
                ".png").exists()
        assert row["VAE impute"] < row["column mean"] + 0.02, row
        assert np.isfinite(row["test log p(x_obs) (nats)"])
        assert row["test log p(x_obs) (nats)"] < 0
    # Even 5 epochs beat filling in the column mean at 50 % missing.
    row = results["random 50%"]
    assert row["VAE impute"] < row["column mean"] - 0.01, row
    assert "| VAE impute |" in proc.stdout
