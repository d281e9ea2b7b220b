"""Smoke test of the imputation example (examples/impute_digits.py), its
`main(argv)` run in the test process (no second interpreter and TensorFlow
import)."""

import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_quick_run_imputes_and_writes_the_pictures(tmp_path, monkeypatch,
                                                   capsys):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    from impute_digits import main

    main(["--quick", "--out", str(tmp_path)])
    stdout = capsys.readouterr().out
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
    assert "| VAE impute |" in stdout
