"""The evaluation report and the figures: metrics checked against scikit-learn on real predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_digits_config, write_config
from sklearn import metrics as sk

from dltrain import api

PNG = b"\x89PNG\r\n\x1a\n"


def _predictions(run: str) -> tuple[np.ndarray, np.ndarray]:
    """(targets, outputs) of the checkpoint's own network on its test split."""
    trainer = api.restore(f"{run}/best.pt")
    with torch.no_grad():
        return trainer.data.test.y.numpy(), trainer.network(trainer.data.test.x).numpy()


def test_classification_report_matches_scikit_learn_and_draws_figures(cli, tmp_path: Path) -> None:
    config = tiny_digits_config(epochs=3)
    config["compile"]["metrics"] = ["accuracy", "precision", "recall", "f1", {"type": "top_k_accuracy", "k": 3}]
    fitted = cli("fit", write_config(tmp_path, config), "--run-dir", "run")
    assert fitted.exit_code == 0, fitted.output
    assert (tmp_path / "run" / "curves.png").read_bytes().startswith(PNG)

    result = cli("evaluate", "run", "--json", "--plot", "figures/confusion.png")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    y, outputs = _predictions("run")
    predicted = outputs.argmax(axis=1)
    assert report["accuracy"] == pytest.approx(sk.accuracy_score(y, predicted))
    for name in ("precision", "recall", "f1"):
        score = getattr(sk, f"{name}_score" if name != "f1" else "f1_score")
        assert report[name] == pytest.approx(score(y, predicted, average="macro", zero_division=0)), name
    assert report["top_k_accuracy"] == pytest.approx(sk.top_k_accuracy_score(y, outputs, k=3, labels=range(10)))
    assert report["confusion_matrix"] == sk.confusion_matrix(y, predicted, labels=range(10)).tolist()
    assert report["per_class"]["3"]["recall"] == pytest.approx(
        sk.recall_score(y, predicted, labels=[3], average=None)[0], abs=1e-4
    )
    assert (tmp_path / "figures" / "confusion.png").read_bytes().startswith(PNG)

    table = cli("evaluate", "run")
    assert "Confusion matrix" in table.output and "precision" in table.output and "top_k_accuracy" in table.output


def test_regression_report_has_r2_and_rmse(cli, tmp_path: Path) -> None:
    config = {
        "seed": 0,
        "data": {"source": "synthetic", "num_samples": 600, "shape": [5], "regression": True, "outputs": 2},
        "model": {"layers": [{"type": "Dense", "units": 32, "activation": "tanh"}, {"type": "Dense", "units": 2}]},
        "compile": {"optimizer": {"type": "adam", "lr": 0.01}, "loss": "mse", "metrics": ["mse"]},
        "fit": {"epochs": 8, "batch_size": 32, "validation_split": 0.2, "device": "cpu"},
    }
    assert cli("fit", write_config(tmp_path, config), "--run-dir", "run").exit_code == 0
    result = cli("evaluate", "run", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    y, outputs = _predictions("run")
    assert report["r2"] == pytest.approx(sk.r2_score(y, outputs), rel=1e-4)
    assert report["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, outputs)), rel=1e-4)
    assert report["mae"] == pytest.approx(sk.mean_absolute_error(y, outputs), rel=1e-4)  # always reported
    assert report["r2"] > 0.5  # it learned something
    refused = cli("evaluate", "run", "--plot", "confusion.png")
    assert refused.exit_code == 2 and "classification" in refused.output


def test_binary_precision_is_that_of_the_positive_label(cli, tmp_path: Path) -> None:
    config = {
        "seed": 0,
        "data": {"source": "synthetic", "num_samples": 500, "shape": [4], "num_classes": 2},
        "model": {"layers": [{"type": "Dense", "units": 1, "activation": "sigmoid"}]},
        "compile": {"optimizer": "adam", "loss": "binary_crossentropy", "metrics": ["precision", "recall", "f1"]},
        "fit": {"epochs": 2, "batch_size": 32, "device": "cpu"},
    }
    assert cli("fit", write_config(tmp_path, config), "--run-dir", "run").exit_code == 0
    report = json.loads(cli("evaluate", "run", "--json").stdout)
    y, outputs = _predictions("run")
    predicted = (outputs > 0).astype(np.float32)
    for name in ("precision", "recall", "f1"):
        score = getattr(sk, f"{name}_score")
        assert report[name] == pytest.approx(score(y.ravel(), predicted.ravel(), zero_division=0)), name
