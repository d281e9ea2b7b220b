"""Smoke test of the main example (the README's first command), its
`main(argv)` run in the test process (no second interpreter and TensorFlow
import)."""

import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_quick_run_writes_results_pictures_and_saved_model(
        tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    from mnist_vae import main

    main(["--quick", "--out", str(tmp_path)])
    assert "Test log-likelihood" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test_log_likelihood"] < 0
    # log p(x) estimate >= ELBO on average (Jensen), up to Monte Carlo noise.
    assert results["test_log_likelihood"] > results["test_elbo"] - 0.5
    for name in ("samples.png", "reconstructions.png", "interpolation.png",
                 "vae.keras", "saved_model/saved_model.pb"):
        assert (tmp_path / name).exists(), name
