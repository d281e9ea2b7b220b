"""Smoke runs of every benchmark (`--quick`), so none can rot.

Every `benchmarks/*.py` but the shared modules is a script with
`main(argv)`, `--quick` and `--output` (see benchmarks/README.md); each is
found here by its file, imported in the test process (no subprocess; with
benchmarks/ on `sys.path`, as `python benchmarks/x.py` runs it) and called
with `--quick --output <file>`. Its report must have the harness's title,
machine line, a table and the run time, and the lines listed below.
"""

import importlib
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
# imported by the scripts, not run
HELPERS = {"harness", "baselines", "ppca_closed_form", "gradient_draws"}

# script: (extra arguments, lines its report must contain besides a table)
EXPECTED = {
    "throughput": ([], [
        "| VAEModel (XLA) | 128 |", "| VAEModel (no XLA) | 128 |",
        "| plain Keras (XLA) | 128 |", "| plain Keras (no XLA) | 128 |",
        "- VAEModel (XLA) / plain Keras (XLA) at batch 128:"]),
    "step_parity": ([], [
        "| 128 | lean |", "| 128 | VAEModel |",
        "| 128 | VAEModel - skip guard, counters, trackers |"]),
    "inference_speed": ([], [
        "| encode |", "| decode |", "| reconstruct |", "| elbo |",
        "| log_likelihood | 2,000 |"]),
    "quality": (["--datasets", "digits"], [
        "| VAEModel ELBO K=1 |",
        "| plain Keras (keras.io) ELBO K=1 |"]),
    "model_family": ([], [
        "| standard normal |",
        "| VampPrior (100 pseudo-inputs) |", "| IAF posterior |",
        "| hierarchical |", "Flow vs diagonal posterior"]),
    "head_study": ([], [
        "| synthetic | softplus, init 1 |", "| synthetic | keras.io |"]),
    "spatial_latent": ([], ["| flat | (32,) |", "| spatial | (4, 4, 2) |"]),
    "ppca": ([], ["| PPCA ML, closed form (exact) |", "| full |"]),
    "distributed_xla": ([], [
        "| single device | 1 | XLA | yes |", "| Mirrored x2 | 2 | XLA | yes |",
        "| Mirrored x2 | 2 | no XLA | no |",
        "- XLA / no XLA, Mirrored x2: "]),
    "serving_latency": ([], [
        "| serving_default | SavedModel | 16 |",
        "| vae.log_likelihood(x, K=10) | in-memory | 16 |",
        "All five signatures have the documented output names"]),
    "serving_load": ([], [
        "| `serving_default` | 1 | 1 |", "| `serving_default` | 32 | 16 |",
        "| `log_likelihood` | 1 | 16 |", "| `log_likelihood` | 32 | 1 |",
        "- errors: 0 of ", "memory flat (delta <= ", "server alive: yes",
        "| NaN | 400 |", "| oversize batch | 400 |",
        "| body too large | 413 |", "| malformed JSON | 400 |"]),
}


SCRIPTS = sorted(name[:-3] for name in os.listdir(BENCHMARKS)
                 if name.endswith(".py") and name[:-3] not in HELPERS)


def test_expected_lines_name_existing_scripts():
    assert set(EXPECTED) <= set(SCRIPTS)


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_run_writes_its_report(script, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)
    main = importlib.import_module(script).main
    args, expected = EXPECTED.get(script, ([], []))
    report = tmp_path / "report.md"
    main(["--quick", "--output", str(report), *args])
    text = report.read_text()
    assert text.startswith("# ") and "- cpu: " in text, text[:500]
    assert "---: |" in text or "--- |" in text, text[-3000:]
    missing = [line for line in expected if line not in text]
    assert not missing, (missing, text[-3000:])
    assert "- total run time: " in text
