"""Checkpoint writes: frozen backbone weights once per run, written in the background, still verified on load."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import tiny_digits_config, write_config

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
        assert (cacheable(trainer.network, trainer.config.data) is not None) == cached, augment


def test_early_stopping_keeps_only_what_trains_and_restores_the_whole_model(cli, tmp_path: Path) -> None:
    """restore_best_weights copies the head, not the frozen backbone, and still restores the best epoch."""
    import csv
    import json

    stop = {"type": "EarlyStopping", "patience": 1, "min_delta": 10, "restore_best_weights": True}  # epoch 1 is best
    config = {**CONFIG, "fit": {**CONFIG["fit"], "epochs": 5, "callbacks": [stop]}}
    run = tmp_path / "run"
    assert cli("fit", write_config(tmp_path, config), "--run-dir", run).exit_code == 0
    with open(run / "history.csv") as handle:
        history = [float(row["val_loss"]) for row in csv.DictReader(handle)]
    assert len(history) == 2 and history[1] != history[0]
    final = json.loads((run / "metrics.json").read_text())
    assert abs(final["val"]["loss"] - history[0]) < 1e-5 * abs(history[0])  # epoch 1's weights are back
    kept = torch.load(run / "last.pt", weights_only=True)["callbacks"][0]["state"]["best_weights"]
    assert kept and not any(k.startswith("layers.0.") for k in kept)  # the head only


def test_writes_are_paced_by_their_cost_and_flush_writes_what_was_held_back(tmp_path: Path) -> None:
    """Right after a write, the next is not due: it waits for a later one or `flush`, never lost."""
    from dltrain.build import build_trainer
    from dltrain.config import load_config
    from dltrain.train.checkpoint import Writer, load

    trainer = build_trainer(load_config(write_config(tmp_path, tiny_digits_config())))
    writer, path = Writer(), tmp_path / "last.pt"
    assert writer.due()  # the first write is never held back
    trainer.epoch = 1
    writer.submit(path, trainer.state())
    writer.flush(held=False)
    assert not writer.due() and writer.spent > 0
    assert load(path).epoch == 1
    trainer.epoch = 2
    writer.submit(path, trainer.state())  # not due: held back
    writer.flush(held=False)
    assert load(path).epoch == 1
    trainer.epoch = 3
    writer.submit(path, trainer.state())  # replaces the snapshot held back
    writer.submit(tmp_path / "now.pt", trainer.state(), now=True)  # `now`: written at once, with what waits
    writer.flush(held=False)
    assert load(path).epoch == 3 and load(tmp_path / "now.pt").epoch == 3
