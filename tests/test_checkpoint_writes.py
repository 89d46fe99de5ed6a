"""Checkpoint writes: frozen backbone weights once per run, written in the background, still verified on load."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import write_config

CONFIG = {
    "name": "frozen",
    "seed": 0,
    "data": {"source": "synthetic", "num_samples": 40, "shape": [3, 32, 32], "num_classes": 3},
    "model": {
        "layers": [
            {"type": "Backbone", "name": "resnet18", "weights": None, "trainable": False},
            {"type": "GlobalAveragePooling2D"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ]
    },
    "compile": {"loss": "categorical_crossentropy", "metrics": ["accuracy"]},
    "fit": {"epochs": 3, "batch_size": 16, "validation_split": 0.25, "device": "cpu"},
}


def test_frozen_backbone_is_written_once_and_the_run_still_evaluates(cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("fit", write_config(tmp_path, CONFIG), "--run-dir", run).exit_code == 0
    frozen = list(run.glob("frozen-*.pt"))
    assert len(frozen) == 1  # one file for the whole run, not one per epoch
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["frozen"]["file"] == frozen[0].name
    assert not any(k.startswith("layers.0.") for k in last["model"])  # the head only
    assert (run / "last.pt").stat().st_size * 50 < frozen[0].stat().st_size
    assert not list(run.glob(".*.tmp"))  # no temporary files left by the background writes

    whole = cli("evaluate", run, "--json")
    assert whole.exit_code == 0, whole.output

    # a damaged frozen file is refused like a damaged checkpoint, and so is a missing one
    raw = bytearray(frozen[0].read_bytes())
    raw[len(raw) // 2] ^= 0x01
    frozen[0].write_bytes(bytes(raw))
    damaged = cli("evaluate", run)
    assert damaged.exit_code == 2 and "damaged" in damaged.stderr and frozen[0].name in damaged.stderr
    frozen[0].unlink()
    missing = cli("evaluate", run)
    assert missing.exit_code == 2 and "missing" in missing.stderr and "Traceback" not in missing.output


def test_resume_reuses_the_frozen_file(cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert (
        cli(
            "fit", write_config(tmp_path, {**CONFIG, "fit": {**CONFIG["fit"], "epochs": 1}}), "--run-dir", run
        ).exit_code
        == 0
    )
    before = list(run.glob("frozen-*.pt"))
    resumed = cli("fit", "--resume", run, "--set", "fit.epochs=2")
    assert resumed.exit_code == 0, resumed.output
    assert list(run.glob("frozen-*.pt")) == before
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2


def test_an_empty_augment_keeps_features_cached(tmp_path: Path) -> None:
    """`augment: {}` asks for no augmentation, so the frozen backbone's outputs are still computed once."""
    from dltrain.build import build_trainer
    from dltrain.config import load_config
    from dltrain.train.feature_cache import cacheable

    for augment, cached in (({}, True), ({"random_flip": "horizontal"}, False)):
        data = {**CONFIG["data"], "augment": augment}
        trainer = build_trainer(load_config(write_config(tmp_path, {**CONFIG, "data": data})))
        assert (cacheable(trainer.network, trainer.data.plan) is not None) == cached, augment
