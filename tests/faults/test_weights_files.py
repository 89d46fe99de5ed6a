"""Backbone `weights:` files that are not what their name says: refused by their first bytes, never unpickled."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml


class Trap:
    """Unpickling this makes a folder: proof that a loader ran the pickle's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def _pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"conv1.weight": Trap(marker)}, protocol=4))


def _torch_trap(path: Path, marker: Path) -> None:
    torch.save({"conv1.weight": Trap(marker)}, path)  # a real torch.save zip whose pickle runs code


FILES = {
    "pickle named .safetensors": ("weights.safetensors", _pickle, "a bare Python pickle"),
    "pickle named .pth": ("weights.pth", _pickle, "a bare Python pickle"),
    "random bytes named .pth": ("weights.pth", lambda p, m: p.write_bytes(os.urandom(4096)), "neither"),
    "random bytes named .safetensors": ("weights.safetensors", lambda p, m: p.write_bytes(os.urandom(4096)), "neither"),
    "torch.save zip named .safetensors": ("weights.safetensors", _torch_trap, "a torch.save file (.pth)"),
    "torch.save zip that runs code": ("weights.pth", _torch_trap, "holds more than tensors"),
    "truncated torch.save zip": (
        "weights.pth",
        lambda p, m: p.write_bytes(b"PK\x03\x04" + os.urandom(100)),
        "not a readable state dict",
    ),
}


@pytest.mark.parametrize("case", FILES, ids=list(FILES))
def test_a_weights_file_that_is_not_what_its_name_says_is_refused_unread(faults, tmp_path: Path, case: str) -> None:
    name, make, phrase = FILES[case]
    weights, marker = tmp_path / name, tmp_path / "the-pickle-ran"
    make(weights, marker)
    config = faults.config()
    text = yaml.safe_load(config.read_text())
    text["data"] = {"source": "synthetic", "num_samples": 16, "shape": [3, 32, 32], "num_classes": 2}
    text["model"]["layers"] = [
        {"type": "Backbone", "name": "resnet18", "weights": str(weights), "trainable": False},
        {"type": "Flatten"},
        {"type": "Dense", "units": 2, "activation": "softmax"},
    ]
    config.write_text(yaml.safe_dump(text, sort_keys=False))
    before = faults.snapshot(weights)
    faults.run("check", config).failed(2, str(weights), phrase)
    assert not marker.exists(), "the pickle was unpickled"
    faults.unchanged(before)
