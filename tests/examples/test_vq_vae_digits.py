"""Smoke test of the VQ-VAE comparison (examples/vq_vae_digits.py), its
`main(argv)` run in the test process (no second interpreter and
TensorFlow import)."""

import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_quick_run_measures_every_quantizer(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    from vq_vae_digits import VARIANTS, main

    rows = main(["--quick", "--out", str(tmp_path), "--seed", "0"])
    stdout = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["variant"] for r in results["rows"]] == list(VARIANTS)
    assert [r["variant"] for r in rows] == list(VARIANTS)
    epochs = results["epochs"]
    steps = epochs * -(-results["train_examples"] // results["batch_size"])
    for row in results["rows"]:
        assert row["variant"] in stdout
        codes = row["codes"]
        assert 0.0 < row["usage"] <= 1.0
        # perplexity <= the number of codes used (equal when uniform)
        assert 1.0 <= row["perplexity"] <= row["usage"] * codes + 1e-6
        assert len(row["mse_curve"]) == epochs
        assert np.isfinite(row["test_mse"]) and 0 < row["test_mse"] < 1
        assert row["test_mse"] == row["mse_curve"][-1]
        assert 0 < row["steps_to_converge"] <= steps
        reach = row["steps_to_mse"]
        assert reach is None or 0 < reach <= steps
        if reach is not None:  # the first epoch at or below the target
            index = reach // row["steps_per_epoch"] - 1
            assert row["mse_curve"][index] <= 0.01
            assert all(m > 0.01 for m in row["mse_curve"][:index])
        assert row["step_ms"] > 0
    # The codes shown decode to exactly the model's reconstruction.
    assert np.shape(results["codes_shown"]) == (4, 4)
    assert results["decode_codes_max_diff"] < 1e-6
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n| ") == 2 + len(VARIANTS)  # header, rule, rows
