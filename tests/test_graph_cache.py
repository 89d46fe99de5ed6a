"""Feature caching of a frozen backbone branch inside a graph: computed once, the same training numbers."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from conftest import write_config


def graph(cache: bool) -> dict[str, Any]:
    """A frozen backbone on the model input, then two branches added back together (a graph, not a chain)."""
    return {
        "name": "cached",
        "seed": 0,
        "data": {"source": "synthetic", "num_samples": 48, "shape": [1, 8, 8], "num_classes": 3},
        "model": {
            "layers": [
                {"type": "Backbone", "arch": "resnet18", "weights": None, "trainable": False, "cache_features": cache},
                {"name": "pooled", "type": "GlobalAveragePooling2D"},
                {"name": "a", "type": "Dense", "units": 8, "activation": "relu"},
                {"name": "b", "type": "Dense", "units": 8, "activation": "relu", "inputs": "pooled"},
                {"type": "Add", "inputs": ["a", "b"]},
                {"type": "Dense", "units": 3, "activation": "softmax"},
            ]
        },
        "compile": {
            "optimizer": {"type": "adam", "lr": 0.01},
            "loss": "categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "fit": {"epochs": 2, "batch_size": 16, "validation_split": 0.25, "device": "cpu"},
    }


def history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_frozen_backbone_branch_in_a_graph_is_computed_once_with_the_same_numbers(cli, tmp_path: Path) -> None:
    cached = cli("fit", write_config(tmp_path, graph(True), "cached.yaml"), "--run-dir", tmp_path / "cached")
    assert cached.exit_code == 0, cached.output
    assert "resnet18 is frozen: its outputs [512, 1, 1]" in cached.output
    plain = cli("fit", write_config(tmp_path, graph(False), "plain.yaml"), "--run-dir", tmp_path / "plain")
    assert plain.exit_code == 0 and "is frozen: its outputs" not in plain.output
    for one, two in zip(history(tmp_path / "cached"), history(tmp_path / "plain"), strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(one[key]) == pytest.approx(float(two[key]), rel=1e-5, abs=1e-6), key
    evaluated = cli("evaluate", tmp_path / "cached", "--json")  # the checkpoint holds the whole graph
    assert evaluated.exit_code == 0, evaluated.output
