"""Smoke runs of this round's benchmarks (`--quick`), so they cannot rot.

Each runs as the README says (`python benchmarks/x.py`, from the
benchmarks folder's imports) in a subprocess and must print its table.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(script, *args):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", script), "--quick",
         *args],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.mark.slow
def test_step_parity_quick():
    out = _run("step_parity.py", "--no-profile")
    for name in ("| 128 | lean |", "| 128 | keras.io |", "| 128 | VAEModel |"):
        assert name in out, out[-2000:]


@pytest.mark.slow
def test_spatial_latent_quick():
    out = _run("spatial_latent.py")
    assert "| flat | (32,) |" in out and "| spatial | (4, 4, 2) |" in out


@pytest.mark.slow
def test_head_study_quick():
    out = _run("head_study.py", "--datasets", "digits")
    for head in ("softplus", "log_variance", "keras.io"):
        assert f"| digits | {head} |" in out, out[-2000:]
