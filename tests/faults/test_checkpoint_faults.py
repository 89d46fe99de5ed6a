"""Damaged and mismatched checkpoints: every command that loads one exits 2 naming what is wrong.

Real files, corrupted the ways files get corrupted (a flipped bit in the weights, a
truncated copy, random bytes) or edited (missing keys, wrong shapes, NaN weights, a
lying input shape, too few class names, a missing frozen-weights file), each loaded by
evaluate, predict, fit --resume and export; a subset also as real subprocesses. Every
case: exit code 2, one message, no traceback. Checkpoints of the older format (no
checksum, nested layer names) still load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from dltrain import api
from dltrain.train.checkpoint import checksum

REPO = Path(__file__).resolve().parents[2]

CONFIG = {
    "name": "faults",
    "seed": 0,
    "data": {"source": "digits", "normalize": "scale", "test_split": 0.2},
    "model": {
        "layers": [
            {"type": "Dense", "units": 16, "activation": "relu"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ]
    },
    "compile": {"optimizer": "adam", "loss": "categorical_crossentropy", "metrics": ["accuracy"]},
    "fit": {"epochs": 1, "batch_size": 64, "device": "cpu"},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run (a tiny MLP, one epoch): its last.pt is what every case damages."""
    import yaml

    folder = tmp_path_factory.mktemp("trained")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    api.fit(path, run_dir=folder / "run")
    return folder / "run" / "last.pt"


# --- ways to damage a checkpoint ----------------------------------------------------------

Damage = Callable[[Path, Path], None]  # (good file, the copy to damage in place)


def _edit(change: Callable[[dict[str, Any]], None], rehash: bool = True) -> Damage:
    """Load the plain data, change it, save it (with a fresh checksum: the edit is not a bit flip)."""

    def damage(good: Path, target: Path) -> None:
        data = torch.load(good, weights_only=True)
        change(data)
        if rehash and isinstance(data.get("model"), dict):
            data["checksum"] = checksum(data["model"])
        torch.save(data, target)

    return damage


def _flip_weight_bit(good: Path, target: Path) -> None:
    """Flip one bit inside the first layer's weight bytes of the zip archive, as a bad disk would."""
    raw = bytearray(good.read_bytes())
    data = torch.load(good, weights_only=True)
    weight = data["model"]["layers.0.weight"].contiguous().view(torch.uint8).numpy().tobytes()
    start = bytes(raw).find(weight[:64])
    assert start > 0
    raw[start + 10] ^= 0x10
    target.write_bytes(bytes(raw))


def _truncate(good: Path, target: Path) -> None:
    target.write_bytes(good.read_bytes()[: good.stat().st_size // 2])


def _random_bytes(good: Path, target: Path) -> None:
    target.write_bytes(np.random.default_rng(0).bytes(4096))


def _pop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.__setitem__(key, value)


def _model(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda data: change(data["model"])


def _nan(model: dict[str, torch.Tensor]) -> None:
    model["layers.1.weight"][0, 0] = float("nan")


# (name, damage, words the message must contain)
FAULTS: list[tuple[str, Damage, list[str]]] = [
    ("flipped bit", _flip_weight_bit, ["damaged", "checksum"]),
    ("truncated", _truncate, ["not a readable checkpoint"]),
    ("random bytes", _random_bytes, ["not a readable checkpoint"]),
    ("missing key", _edit(_pop("task")), ["damaged", "missing keys: task"]),
    ("wrongly typed key", _edit(_set("input_shape", "64")), ["damaged", "'input_shape'"]),
    ("missing weight", _edit(_model(lambda m: m.pop("layers.1.bias"))), ["missing weights: layers.1.bias"]),
    (
        "wrong shape",
        _edit(_model(lambda m: m.__setitem__("layers.0.weight", torch.zeros(16, 32)))),
        ["shapes differ", "layers.0.weight is [16, 32] in the file, [16, 64] in the model"],
    ),
    ("nan weights", _edit(_model(_nan)), ["damaged", "non-finite", "layers.1.weight"]),
    ("lying input shape", _edit(_set("input_shape", [32])), ["damaged", "inputs of [32]", "makes [64]"]),
    ("short class names", _edit(_set("class_names", ["0", "1", "2"])), ["damaged", "names 3 classes", "10 classes"]),
    (
        "missing frozen file",
        _edit(_set("frozen", {"file": "frozen-0123.pt", "checksum": "0" * 64})),
        ["frozen-0123.pt", "missing"],
    ),
]

COMMANDS: dict[str, Callable[[Path, Path], list[str | Path]]] = {  # (checkpoint, a sample file) -> arguments
    "evaluate": lambda ckpt, sample: ["evaluate", ckpt],
    "predict": lambda ckpt, sample: ["predict", ckpt, sample],
    "fit --resume": lambda ckpt, sample: ["fit", "--resume", ckpt, "--set", "fit.epochs=2"],
    "export": lambda ckpt, sample: ["export", ckpt, "--format", "torchscript", "-o", ckpt.with_suffix(".ts")],
}


def _damaged(trained: Path, folder: Path, damage: Damage) -> tuple[Path, Path]:
    target = folder / "damaged.pt"
    damage(trained, target)
    sample = folder / "sample.npy"
    np.save(sample, np.zeros(64, dtype=np.float32))
    return target, sample


def _one_error(stderr: str, words: list[str]) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


# evaluate and predict meet every fault; resume and export (which load through the same build) a sample of them
CASES = [(command, fault) for command in ("evaluate", "predict") for fault in FAULTS] + [
    (command, fault)
    for command in ("fit --resume", "export")
    for fault in FAULTS
    if fault[0] in ("flipped bit", "truncated", "wrong shape", "nan weights", "short class names")
]


@pytest.mark.parametrize("command,fault", CASES, ids=[f"{c}-{f[0]}" for c, f in CASES])
def test_damaged_checkpoint_exits_2_naming_the_fault(
    cli, trained: Path, tmp_path: Path, command: str, fault: tuple[str, Damage, list[str]]
) -> None:
    _, damage, words = fault
    target, sample = _damaged(trained, tmp_path, damage)
    before = target.read_bytes()
    result = cli(*COMMANDS[command](target, sample))
    assert result.exit_code == 2, result.output
    _one_error(result.stderr, words)
    assert target.read_bytes() == before  # nothing written over the checkpoint
    assert not (tmp_path / "damaged.ts").exists()


def test_a_set_that_changes_the_model_is_named(cli, trained: Path, tmp_path: Path) -> None:
    result = cli("evaluate", trained, "--set", "model.layers[0].units=8")
    assert result.exit_code == 2
    _one_error(result.stderr, ["does not fit the model", "layers.0.weight is [16, 64] in the file, [8, 64]", "--set"])


def test_older_checkpoint_without_checksum_still_loads(cli, trained: Path, tmp_path: Path) -> None:
    """Format 1: no checksum, `layers.N.0.weight` names for a Dense with an activation."""

    def older(data: dict[str, Any]) -> None:
        data["format"] = "dltrain-checkpoint-1"
        data.pop("checksum")
        data["model"] = {k.replace("layers.0.", "layers.0.0."): v for k, v in data["model"].items()}

    target, _ = _damaged(trained, tmp_path, _edit(older, rehash=False))
    now = cli("evaluate", trained, "--json")
    then = cli("evaluate", target, "--json")
    assert then.exit_code == 0, then.output
    assert then.stdout.replace(str(target), "") == now.stdout.replace(str(trained), "")


@pytest.mark.parametrize("name", ["flipped bit", "truncated", "short class names"])
def test_real_process_reports_one_line(trained: Path, tmp_path: Path, name: str) -> None:
    damage, words = next((d, w) for n, d, w in FAULTS if n == name)
    target, sample = _damaged(trained, tmp_path, damage)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for args in (["evaluate", target], ["predict", target, sample]):
        done = subprocess.run(
            [sys.executable, "-m", "dltrain", *map(str, args)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        _one_error(done.stderr, words)
        assert done.stdout == ""


def test_the_flip_lands_in_the_weights(trained: Path, tmp_path: Path) -> None:
    """The bit-flip case corrupts tensor bytes inside an intact archive (not the zip structure)."""
    target, _ = _damaged(trained, tmp_path, _flip_weight_bit)
    assert zipfile.is_zipfile(target)
    flipped = torch.load(target, weights_only=True)["model"]["layers.0.weight"]
    assert not torch.equal(flipped, torch.load(trained, weights_only=True)["model"]["layers.0.weight"])
