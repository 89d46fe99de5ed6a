"""Feature caching of a frozen backbone branch inside a graph (and on one of several named inputs):
computed once, the same training numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
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


def two_inputs(cache: bool) -> dict[str, Any]:
    """A small table and an image in (the image declared second); a frozen backbone on the image only,
    joined with the table; a class and a number out."""
    return {
        "name": "two",
        "seed": 0,
        "data": {"source": "npz", "path": "two.npz"},
        "model": {
            "inputs": {"table": [4], "image": [3, 8, 8]},
            "layers": [
                {
                    "type": "Backbone",
                    "arch": "resnet18",
                    "weights": None,
                    "trainable": False,
                    "cache_features": cache,
                    "inputs": "image",
                },
                {"type": "GlobalAveragePooling2D"},
                {"name": "joined", "type": "Concatenate", "inputs": [-1, "table"]},
                {"type": "Dense", "units": 8, "activation": "relu"},
                {"name": "label", "type": "Dense", "units": 3, "activation": "softmax"},
                {"name": "size", "type": "Dense", "units": 1, "inputs": "joined"},
            ],
            "outputs": ["label", "size"],
        },
        "compile": {
            "optimizer": {"type": "adam", "lr": 0.01},
            "loss": {"label": "categorical_crossentropy", "size": "mse"},
            "metrics": {"label": ["accuracy"], "size": ["mae"]},
        },
        "fit": {"epochs": 3, "batch_size": 16, "validation_split": 0.25, "device": "cpu"},
    }


def write_two_npz(path: Path, samples: int = 64) -> None:
    """The arrays `two_inputs` reads: an image and a table in, a class and a number out (seeded)."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(samples, 3, 8, 8)).astype(np.float32)
    table = rng.normal(size=(samples, 4)).astype(np.float32)
    label = (table[:, 0] + image[:, 0].mean(axis=(1, 2)) > 0).astype(np.int64) + (table[:, 1] > 0.5)
    size = table[:, :1] * 2 + 1
    np.savez(path, x_train_image=image, x_train_table=table, y_train_label=label, y_train_size=size)


def test_a_frozen_backbone_on_one_of_two_named_inputs_is_computed_once_with_the_same_numbers(
    cli, tmp_path: Path
) -> None:
    write_two_npz(tmp_path / "two.npz")
    cached = cli("fit", write_config(tmp_path, two_inputs(True), "cached.yaml"), "--run-dir", tmp_path / "cached")
    assert cached.exit_code == 0, cached.output
    assert "resnet18 is frozen: its outputs [512, 1, 1] for 64 samples were computed once" in cached.output
    plain = cli("fit", write_config(tmp_path, two_inputs(False), "plain.yaml"), "--run-dir", tmp_path / "plain")
    assert plain.exit_code == 0 and "is frozen: its outputs" not in plain.output
    keys = ("loss", "label_loss", "label_accuracy", "size_loss", "size_mae", "val_loss", "val_label_accuracy")
    for one, two in zip(history(tmp_path / "cached"), history(tmp_path / "plain"), strict=True):
        for key in keys:
            assert float(one[key]) == pytest.approx(float(two[key]), rel=1e-5, abs=1e-6), key
    reports = [json.loads(cli("evaluate", tmp_path / run, "--json").stdout) for run in ("cached", "plain")]
    for key in ("loss", "label_accuracy", "size_rmse", "size_r2"):
        assert reports[0][key] == pytest.approx(reports[1][key], rel=1e-5, abs=1e-6), key
    pretrained = two_inputs(True)
    pretrained["model"]["layers"][0]["weights"] = "imagenet"  # would want ImageNet statistics inside the model
    refused = cli("check", write_config(tmp_path, pretrained, "pretrained.yaml"))
    message = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "no input is adapted inside the model" in message
    assert "would need data.normalize: imagenet" in message and "set data.normalize to scale" in message
