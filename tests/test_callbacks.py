"""Callbacks and the NaN guard, each in a tiny real run."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_digits_config, write_config

from dltrain.train import checkpoint


def _fit(cli, tmp_path: Path, config: dict[str, Any], run: str = "run") -> list[dict[str, float]]:  # type: ignore[no-untyped-def]
    result = cli("fit", write_config(tmp_path, config), "--run-dir", run)
    assert result.exit_code == 0, result.output
    with open(tmp_path / run / "history.csv") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def test_early_stopping_stops_and_restores_the_best_weights(cli, tmp_path: Path) -> None:
    config = tiny_digits_config(
        epochs=10,
        callbacks=[
            # an improvement must beat the best by 10: only the first epoch counts as one
            {"type": "EarlyStopping", "patience": 2, "min_delta": 10, "restore_best_weights": True}
        ],
    )
    history = _fit(cli, tmp_path, config)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert final["val"]["loss"] == pytest.approx(history[0]["val_loss"], rel=1e-6)  # epoch 1's weights are back
    assert history[2]["val_loss"] != pytest.approx(history[0]["val_loss"], rel=1e-3)


def test_model_checkpoint_keeps_the_best_by_its_monitor_and_every_epoch_on_request(cli, tmp_path: Path) -> None:
    config = tiny_digits_config(
        epochs=4,
        callbacks=[
            {"type": "ModelCheckpoint", "monitor": "val_accuracy", "mode": "max"},
            {"type": "ModelCheckpoint", "save_best_only": False, "filename": "epoch-{epoch:02d}.pt"},
        ],
    )
    config["compile"]["optimizer"] = {"type": "adam", "lr": 0.02}
    history = _fit(cli, tmp_path, config)
    accuracies = [row["val_accuracy"] for row in history]
    best = checkpoint.load(tmp_path / "run" / "best.pt")
    assert best.epoch == accuracies.index(max(accuracies)) + 1
    assert best.monitor == "val_accuracy" and best.best == max(accuracies)
    for epoch in range(1, 5):
        assert checkpoint.load(tmp_path / "run" / f"epoch-{epoch:02d}.pt").epoch == epoch


@pytest.mark.parametrize("where", ["callback", "schedule"])
def test_reduce_lr_on_plateau_divides_the_lr_when_the_monitor_stalls(cli, tmp_path: Path, where: str) -> None:
    keys = {"patience": 0, "factor": 0.5, "min_delta": 10, "min_lr": 0.0002}
    config = tiny_digits_config(epochs=5)
    if where == "callback":
        config["fit"]["callbacks"] = [{"type": "ReduceLROnPlateau", **keys}]
    else:
        config["compile"]["lr_schedule"] = {"type": "reduce_on_plateau", **keys}
    history = _fit(cli, tmp_path, config)
    assert [row["lr"] for row in history] == pytest.approx([0.001, 0.001, 0.0005, 0.00025, 0.0002])


def test_csv_logger_and_tensorboard_write_every_epoch(cli, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_digits_config(
        epochs=2,
        callbacks=[{"type": "CSVLogger", "filename": "logs/history.tsv", "separator": "\t"}, {"type": "TensorBoard"}],
    )
    history = _fit(cli, tmp_path, config)
    with open(tmp_path / "run" / "logs" / "history.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [float(r["val_loss"]) for r in rows] == [row["val_loss"] for row in history]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("val_accuracy")] == pytest.approx([r["val_accuracy"] for r in history])


def test_tensorboard_without_the_package_is_a_clear_error(cli, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    config = write_config(tmp_path, tiny_digits_config(callbacks=["TensorBoard"]))
    result = cli("fit", config, "--run-dir", "run")
    assert result.exit_code == 2
    assert "fit.callbacks[0].type" in result.output and "pip install 'dltrain[tensorboard]'" in result.output
    assert not (tmp_path / "run").exists()


def test_an_unknown_monitor_is_reported_with_its_line_before_training(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_digits_config(callbacks=[{"type": "EarlyStopping", "monitor": "val_acc"}]))
    result = cli("fit", config, "--run-dir", "run")
    assert result.exit_code == 2
    assert "config.yaml:" in result.output and "fit.callbacks[0].monitor" in result.output
    assert "val_accuracy" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoints(cli, tmp_path: Path) -> None:
    config = {
        "seed": 0,
        "data": {"source": "synthetic", "num_samples": 400, "shape": [8], "regression": True},
        "model": {"layers": [{"type": "Dense", "units": 16, "activation": "relu"}, {"type": "Dense", "units": 1}]},
        "compile": {"optimizer": {"type": "sgd", "lr": 0.01}, "loss": "mse"},
        "fit": {"epochs": 1, "batch_size": 16, "device": "cpu"},
    }
    assert cli("fit", write_config(tmp_path, config), "--run-dir", "run").exit_code == 0
    before = checkpoint.load(tmp_path / "run" / "last.pt")
    # the same run, continued with a learning rate that makes SGD diverge to inf/nan
    result = cli("fit", "--resume", "run", "--set", "fit.epochs=3", "--set", "compile.optimizer.lr=50")
    assert result.exit_code == 1
    assert "loss became nan in epoch 2" in result.output and "step" in result.output
    for name in ("last.pt", "best.pt"):
        kept = checkpoint.load(tmp_path / "run" / name)
        assert kept.epoch == 1
        for key, tensor in kept.model.items():
            assert torch.equal(tensor, before.model[key])


def test_misspelled_schedules_callbacks_and_fit_keys_are_all_reported(cli, tmp_path: Path) -> None:
    config = tiny_digits_config(
        precision=16, callbacks=[{"type": "EarlyStoping"}, {"type": "ModelCheckpoint", "filename": "../x.pt"}]
    )
    config["compile"]["lr_schedule"] = {"type": "cosin"}
    result = cli("check", write_config(tmp_path, config))
    assert result.exit_code == 2
    for expected in (
        "compile.lr_schedule.type",
        "Did you mean 'cosine'",
        "fit.precision",
        "'bf16-mixed'",
        "fit.callbacks[0].type",
        "Did you mean 'EarlyStopping'",
        "fit.callbacks[1].filename",
    ):
        assert expected in result.output, expected
