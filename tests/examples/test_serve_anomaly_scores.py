"""Smoke test of examples/serve_anomaly_scores.py (scores served in a
process that never imports keras_vae). The example's `main(argv)` runs in
the test process; the server it starts is the only second interpreter."""

import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_quick_run_scores_anomalies_with_the_served_model(
        tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    from serve_anomaly_scores import main

    main(["--quick", "--out", str(tmp_path)])
    assert "ROC AUC" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    server = results["server"]
    assert server["keras_vae_imported"] is False
    assert "log_likelihood" in server["signatures"]
    assert server["input"] == ["x", "float32", [None, 64]]
    assert server["output"] == ["log_likelihood", "float32", [None]]

    rows = {r["inputs"].split(" ")[0]: r for r in results["rows"]}
    assert set(rows) == {"normal", "flip", "noise", "invert", "patch",
                         "novel-digit"}
    for r in rows.values():
        assert np.isfinite(r["mean_score"]) and r["mean_score"] > 0
        assert 0.0 <= r["flagged"] <= 1.0
    # Even after 2 epochs an inverted digit is far less likely than a digit.
    assert rows["invert"]["auc"] > 0.9
    assert rows["invert"]["mean_score"] > rows["normal"]["mean_score"]
    # The served scores agree with the in-memory model up to MC noise.
    assert abs(results["in_memory_mean_normal_score"]
               - rows["normal"]["mean_score"]) < 1.0

    with np.load(tmp_path / "scores.npz") as f:
        assert len(f["normal"]) == rows["normal"]["n"]
        assert np.all(np.isfinite(f["normal"]))
    for name in ("saved_model/saved_model.pb", "score_server.py",
                 "requests.npz", "scores.png"):
        assert (tmp_path / name).exists(), name
