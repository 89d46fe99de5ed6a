"""Your own layers, losses, metrics and callbacks by import path, from a package written into a temp dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import REPO, write_config

BLOCKS = '''\
import torch
from torch import nn


class Scaled(nn.Module):
    """A dense layer whose output is multiplied by a learned scale."""

    def __init__(self, units: int, input_shape: tuple, scale: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(input_shape[-1], units)
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, x):
        return self.linear(x) * self.scale


class FocalLoss(nn.Module):
    task = "classification"
    absorbs = "softmax"

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, logits, targets):
        logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
        return (-(1 - logp.exp()) ** self.gamma * logp).mean()


def top1(outputs, targets):
    return (outputs.argmax(-1) == targets).float().mean()


class Counter:
    def __init__(self, start: int = 0) -> None:
        self.epochs = start

    def on_epoch_end(self, trainer, row):
        self.epochs += 1
        row["counted"] = self.epochs

    def state(self):
        return {"epochs": self.epochs}

    def load_state(self, state):
        self.epochs = state["epochs"]
'''


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`tinyblocks` 1.2, installed the way pip leaves it (a dist-info with its entry point), on sys.path."""
    root = tmp_path / "site"
    (root / "tinyblocks").mkdir(parents=True)
    (root / "tinyblocks" / "__init__.py").write_text("")
    (root / "tinyblocks" / "blocks.py").write_text(BLOCKS)
    info = root / "tinyblocks-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyblocks\nVersion: 1.2\n")
    (info / "top_level.txt").write_text("tinyblocks\n")
    (info / "entry_points.txt").write_text("[dltrain.nn.layers]\nScaledDense = tinyblocks.blocks:Scaled\n")
    monkeypatch.syspath_prepend(str(root))
    return root


def config(**fit: object) -> dict[str, object]:
    return {
        "name": "custom",
        "seed": 0,
        "data": {"source": "digits", "normalize": "scale"},
        "model": {
            "layers": [
                {"type": "tinyblocks.blocks:Scaled", "units": 32, "scale": 0.5},
                {"type": "Activation", "activation": "relu"},
                {"type": "ScaledDense", "units": 10},  # the entry point's name
                {"type": "Activation", "activation": "softmax"},
            ]
        },
        "compile": {
            "loss": {"type": "tinyblocks.blocks:FocalLoss", "gamma": 1.5},
            "metrics": ["accuracy", "tinyblocks.blocks:top1"],
        },
        "fit": {
            "epochs": 2,
            "batch_size": 64,
            "validation_split": 0.2,
            "device": "cpu",
            "callbacks": [{"type": "tinyblocks.blocks:Counter"}],
            **fit,
        },
    }


def test_custom_layer_trains_resumes_evaluates_exports_and_is_refused_without_its_package(
    cli, tmp_path: Path, package: Path
) -> None:
    summary = cli("check", write_config(tmp_path, config()), "--json")
    assert summary.exit_code == 0, summary.output
    # Scaled: Linear 64*32+32 = 2080, plus its scale = 2081; the entry-point layer: 32*10+10+1 = 331
    assert [layer["params"] for layer in json.loads(summary.stdout)["layers"]] == [2081, 0, 331, 0]
    one = cli("fit", write_config(tmp_path, config(epochs=1), "one.yaml"), "--run-dir", "part")
    assert one.exit_code == 0, one.output
    resumed = cli("fit", "--resume", "part", "--set", "fit.epochs=2")
    assert resumed.exit_code == 0, resumed.output
    part = torch.load("part/last.pt", weights_only=True)
    assert [row["counted"] for row in part["history"]] == [1, 2]  # the callback's state was resumed
    assert {"val_top1", "top1"} <= set(part["history"][-1])
    assert part["imports"][0] == {
        "type": "tinyblocks.blocks:Scaled",
        "path": "tinyblocks.blocks:Scaled",
        "package": "tinyblocks",
        "version": "1.2",
    }
    report = cli("evaluate", "part", "--json")
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["accuracy"] > 0.2
    for fmt in ("onnx", "torchscript"):
        exported = cli("export", "part", "--format", fmt, "-o", f"model.{fmt}")
        assert exported.exit_code == 0, exported.output

    gone = cli.subprocess("evaluate", "part", env={"PYTHONPATH": str(REPO)})  # the package is not on this path
    assert gone.returncode == 2, gone.stderr
    assert "pip install tinyblocks==1.2" in " ".join(gone.stderr.split())
    assert "Traceback" not in gone.stderr


@pytest.mark.parametrize(
    "change, message",
    [
        ({"unit": 3}, "unknown key 'unit'. Did you mean 'units'?"),
        ({"units": "many"}, "model.layers[0].units: input should be a valid integer"),
        ({"type": "tinyblocks.blocks:Scald"}, "has no 'Scald'. Did you mean 'Scaled'?"),
        ({"type": "tinyblocks.nothere:Scaled"}, "cannot import module 'tinyblocks.nothere'"),
        ({"type": "tinyblocks.blocks:top1"}, "is not an nn.Module class"),
    ],
)
def test_custom_layer_keys_are_validated_with_their_line(
    cli, tmp_path: Path, package: Path, change: dict[str, object], message: str
) -> None:
    raw = config()
    raw["model"]["layers"][0] = {**raw["model"]["layers"][0], **change}  # type: ignore[index]
    result = cli("check", write_config(tmp_path, raw))
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert message in text and "config.yaml:" in text, text


def test_custom_layer_in_a_graph(cli, tmp_path: Path, package: Path) -> None:
    raw = config()
    raw["model"]["layers"] = [
        {"name": "a", "type": "tinyblocks.blocks:Scaled", "units": 16},
        {"name": "b", "type": "Dense", "units": 16, "inputs": "input"},
        {"type": "Add", "inputs": ["a", "b"]},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]
    result = cli("check", write_config(tmp_path, raw), "--json")
    assert result.exit_code == 0, result.output
    assert [layer["params"] for layer in json.loads(result.stdout)["layers"]] == [
        64 * 16 + 16 + 1,
        64 * 16 + 16,
        0,
        170,
    ]
    assert os.environ.get("PYTHONPATH") is None or "site" not in os.environ["PYTHONPATH"]
