"""`dltrain fit` and `dltrain evaluate` end to end on the embedded digits data."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import tiny_digits_config, write_config


def test_fit_writes_run_directory_and_evaluate_reads_it(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_digits_config(epochs=3))
    result = cli("fit", config, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    for name in ("config.yaml", "history.csv", "last.pt", "best.pt", "metrics.json", "train.log"):
        assert (run / name).is_file(), name
    assert str(run) in result.output
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].split(",")[:5] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert len(history) == 4
    payload = torch.load(run / "last.pt", weights_only=True)
    assert payload["epoch"] == 3 and payload["config"]["seed"] == 0

    report = cli("evaluate", run / "best.pt", "--json")
    assert report.exit_code == 0, report.output
    data = json.loads(report.stdout)
    assert 0.0 <= data["accuracy"] <= 1.0
    assert len(data["confusion_matrix"]) == 10
    assert sum(map(sum, data["confusion_matrix"])) == data["samples"]
