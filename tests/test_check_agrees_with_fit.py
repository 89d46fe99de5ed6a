"""`dltrain check` is `dltrain fit` without training: same verdict, same message, for valid and invalid configs.

Each config of the corpus goes through `check` and through `fit --set fit.epochs=1`; both
must exit with the same code, and an invalid config must get the same error message
from both (every line of it, so not only the "N problems" header agrees).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import tiny_digits_config, write_config

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    """An edit that sets a dotted key of the config (creating the dicts on the way)."""

    def edit(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {}) if not key.isdigit() else node[int(key)]
        node[int(last) if last.isdigit() else last] = value

    return edit


CNN = [
    {"type": "Reshape", "target_shape": [1, 8, 8]},
    {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]

# (name, edits to the tiny digits MLP, expected exit code)
CORPUS: list[tuple[str, list[Edit], int]] = [
    ("valid mlp", [], 0),
    (
        "valid cnn with callbacks",
        [
            _set("model.layers", CNN),
            _set(
                "fit.callbacks",
                [
                    {"type": "EarlyStopping", "monitor": "val_accuracy", "patience": 2},
                    {"type": "ModelCheckpoint", "monitor": "val_loss"},
                ],
            ),
        ],
        0,
    ),
    (
        "valid plateau schedule on loss",
        [_set("compile.lr_schedule", {"type": "reduce_on_plateau", "monitor": "loss"})],
        0,
    ),
    (
        "callback monitors a key the row lacks",
        [_set("fit.callbacks", [{"type": "EarlyStopping", "monitor": "val_acc"}])],
        2,
    ),
    (
        "schedule monitors a key the row lacks",
        [_set("compile.lr_schedule", {"type": "reduce_on_plateau", "monitor": "val_acc"})],
        2,
    ),
    (
        "val_ monitor without validation data",
        [_set("fit.validation_split", 0), _set("fit.callbacks", [{"type": "ModelCheckpoint", "monitor": "val_loss"}])],
        2,
    ),
    ("absent device", [_set("fit.device", "cuda:7")], 2),
    ("output width does not match the classes", [_set("model.layers.1.units", 7)], 2),
    ("metric of another task", [_set("compile.loss", "mse"), _set("model.layers.1.activation", "linear")], 2),
    ("declared input shape differs from the data", [_set("model.input_shape", [32])], 2),
    ("unknown layer key", [_set("model.layers.0.unit", 3)], 2),
    ("missing data file", [_set("data", {"source": "npz", "path": "absent.npz"})], 2),
    ("image layer on flat data", [_set("model.layers", CNN[1:])], 2),
]


def _message(result: Any) -> str:
    """What the command said on stderr (the error, for a failure)."""
    return result.stderr.strip()


@pytest.mark.parametrize("name,edits,code", CORPUS, ids=[c[0] for c in CORPUS])
def test_check_and_fit_agree(cli, tmp_path: Path, name: str, edits: list[Edit], code: int) -> None:
    config = copy.deepcopy(tiny_digits_config(epochs=3, batch_size=64))
    for edit in edits:
        edit(config)
    path = write_config(tmp_path, config)
    checked = cli("check", path)
    fitted = cli("fit", path, "--set", "fit.epochs=1", "--run-dir", tmp_path / "run")
    assert (checked.exit_code, fitted.exit_code) == (code, code), (checked.output, fitted.output)
    if code:
        assert _message(checked) == _message(fitted) != ""
        assert "Traceback" not in checked.output + fitted.output
        assert not (tmp_path / "run" / "last.pt").exists()  # a rejected fit trains nothing
