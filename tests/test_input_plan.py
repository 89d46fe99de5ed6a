"""The input plan: one decision of how samples become model inputs, stored and read back by predict and serve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from conftest import REPO, write_config
from data_files import write_table

from dltrain.build import build_trainer
from dltrain.config import load_config
from dltrain.schema.inputs import InputPlan

BACKBONE = {
    "name": "plan",
    "seed": 0,
    "data": {"source": "synthetic", "num_samples": 24, "shape": [1, 8, 8], "num_classes": 3},
    "model": {
        "layers": [
            {"type": "Backbone", "arch": "resnet18", "weights": None, "trainable": False},
            {"type": "GlobalAveragePooling2D"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ]
    },
    "compile": {"loss": "categorical_crossentropy"},
    "fit": {"epochs": 1, "batch_size": 8, "validation_split": 0.25, "device": "cpu"},
}


def test_a_leading_backbone_is_planned_once_and_the_model_reads_the_plan(tmp_path: Path) -> None:
    trainer = build_trainer(load_config(write_config(tmp_path, BACKBONE)))
    plan = trainer.data.plan
    assert plan is not None and plan.source == "synthetic" and plan.kind == "image"
    assert plan.raw_shape == [1, 8, 8] and plan.channels == 3 and plan.resize is None
    assert not plan.augment and not plan.imagenet
    assert [n.split(":")[0] for n in plan.notes] == ["data.channels"]
    assert trainer.network.adapter is not None and trainer.network.adapter.out_shape == (3, 8, 8)
    assert trainer.config.data.channels == 3  # the resolved config shows what ran
    assert InputPlan.from_state(json.loads(json.dumps(plan.state()))) == plan
    stored = trainer.state()
    assert stored.input_plan == plan.state() and stored.plan() == plan


def test_predict_reads_rows_as_the_stored_plan_says_and_old_checkpoints_still_predict(cli, tmp_path: Path) -> None:
    write_table(tmp_path / "flowers.csv")
    config = {
        "name": "table",
        "seed": 0,
        "data": {
            "source": "csv",
            "path": "flowers.csv",
            "target": "species",
            "features": ["petal_length", "petal_width", "soil"],
            "normalize": "standardize",
        },
        "model": {"layers": [{"type": "Dense", "units": 3, "activation": "softmax"}]},
        "compile": {"optimizer": {"type": "adam", "lr": 0.05}, "loss": "categorical_crossentropy"},
        "fit": {"epochs": 3, "batch_size": 32, "device": "cpu"},
    }
    assert cli("fit", write_config(tmp_path, config), "--run-dir", tmp_path / "run").exit_code == 0
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert saved["input_plan"]["kind"] == "table" and saved["input_plan"]["source"] == "csv"
    (tmp_path / "new.csv").write_text("soil,petal_width,petal_length\nclay,0.3,1.4\npeat,2.0,5.6\n")
    planned = json.loads(cli("predict", tmp_path / "run" / "last.pt", tmp_path / "new.csv", "--json").stdout)

    del saved["input_plan"]  # a checkpoint written before plans were stored: the plan comes from its config
    torch.save(saved, tmp_path / "old.pt")
    old = cli("predict", tmp_path / "old.pt", tmp_path / "new.csv", "--json")
    assert old.exit_code == 0, old.output
    assert json.loads(old.stdout) == planned and len(planned["predictions"]) == 2


def test_the_plan_is_read_without_torch() -> None:
    """`serve` of an ONNX export reads the plan from its JSON with no torch installed."""
    code = (
        "import sys; from dltrain.schema.inputs import InputPlan; from dltrain.serve.spec import InputSpec; "
        "spec = InputSpec.from_state({'shape': [2], 'table': {'columns': ['a', 'b'], 'window': 3}, 'kind': 'array'}); "
        "assert spec.kind == 'array', spec.kind; assert 'torch' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_old_backbone_form_is_read_with_a_note(tmp_path: Path) -> None:
    """`name: resnet18` (before `name` named graph nodes) still builds resnet18, and `check`/`fit` say so."""
    old = {**BACKBONE, "model": {"layers": [{"type": "Backbone", "name": "resnet18", "weights": None}]}}
    old["model"]["layers"] += BACKBONE["model"]["layers"][1:]
    trainer = build_trainer(load_config(write_config(tmp_path, old)))
    notes = [n for n in trainer.built.notes if "the old form" in n]
    assert len(notes) == 1 and "config.yaml:" in notes[0] and "`arch: resnet18`" in notes[0], trainer.built.notes
    assert trainer.config.model.layers[0].arch == "resnet18"
    new = build_trainer(load_config(write_config(tmp_path, BACKBONE)))
    assert not [n for n in new.built.notes if "the old form" in n]
