"""Fault injection, config family: values that used to reach a traceback (or train on silently)
end in one message and exit 2, before anything is allocated or written.

Its configs are the suite's tiny digits MLP (`tiny_config`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import assert_refused

from .conftest import tiny_config

DIGITS: dict[str, Any] = {**tiny_config(batch_size=64), "name": "faults"}
del DIGITS["fit"]["validation_split"]  # these cases train on the whole training split


def write(tmp_path: Path, config: dict[str, Any] | str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# (--set override, words the message must hold)
BAD_VALUES = [
    ("seed=-1", ["seed", "greater than or equal to 0"]),
    ("seed=100000000000000000000000", ["seed", "less than"]),
    ("compile.optimizer.lr=.nan", ["compile.optimizer.lr"]),
    ("compile.optimizer.lr=.inf", ["compile.optimizer.lr", "finite"]),
    ("fit.gradient_clip=.inf", ["fit.gradient_clip", "finite"]),
    ("compile.optimizer.weight_decay=.nan", ["compile.optimizer.weight_decay"]),
    ("model.layers[0].units=100000000000", ["model.layers[0]", "parameters", "fewer units"]),
    ("fit.validation_split=.nan", ["fit.validation_split"]),
]


@pytest.mark.parametrize("override,words", BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_bad_values_are_refused_by_check_and_fit(cli, tmp_path: Path, override: str, words: list[str]) -> None:
    config = write(tmp_path, DIGITS)
    for command in ("check", "fit"):
        assert_refused(cli(command, config, "--set", override), *words)
    assert not (tmp_path / "runs").exists()  # nothing written


def test_a_batch_too_large_for_memory_is_refused_with_the_estimate(cli, tmp_path: Path) -> None:
    # few parameters, but each sample's Dense output is [1000, 100000]: 640 GB of activations for 800 samples
    config = {
        **DIGITS,
        "data": {"source": "synthetic", "num_samples": 1000, "shape": [1000, 4], "num_classes": 2},
        "model": {
            "layers": [
                {"type": "Dense", "units": 100000},
                {"type": "GlobalAveragePooling1D"},
                {"type": "Dense", "units": 2, "activation": "softmax"},
            ]
        },
        "fit": {"epochs": 1, "batch_size": 1000000, "device": "cpu"},
    }
    for command in ("check", "fit"):
        assert_refused(
            cli(command, write(tmp_path, config)), "fit.batch_size", "GB", "batch of 800", "Lower fit.batch_size"
        )
    assert not (tmp_path / "runs").exists()


def test_yaml_alias_bomb_is_refused_quickly(cli, tmp_path: Path) -> None:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]")  # 10**9 values in 9 lines
    result = cli.subprocess("check", write(tmp_path, "\n".join(lines) + "\n"), cwd=tmp_path, timeout=120)
    assert_refused(result, "expands to more than", "aliases")


def test_deeply_nested_yaml_is_refused(cli, tmp_path: Path) -> None:
    assert_refused(cli("check", write(tmp_path, "data: " + "[" * 5000 + "]" * 5000 + "\n")), "nested too deeply")


def test_set_into_a_shorthand_value_works(cli, tmp_path: Path) -> None:
    """The README's `--set compile.optimizer.lr=1e-4` on `optimizer: adam` (a control case: exit 0)."""
    result = cli("fit", write(tmp_path, DIGITS), "--set", "compile.optimizer.lr=1e-4", "--run-dir", "run")
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["compile"]["optimizer"]["type"] == "adam" and saved["compile"]["optimizer"]["lr"] == pytest.approx(
        1e-4
    )


def test_resuming_a_finished_run_says_so_and_changes_nothing(cli, tmp_path: Path) -> None:
    assert cli("fit", write(tmp_path, DIGITS), "--run-dir", "run").exit_code == 0
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "run").iterdir() if p.is_file()}
    result = cli.subprocess("fit", "--resume", "run", cwd=tmp_path)
    assert_refused(result, "finished", "trained 1 of fit.epochs=1", "--set fit.epochs=")
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert after == files


def test_a_nan_loss_in_the_first_epoch_promises_no_checkpoint(cli, tmp_path: Path) -> None:
    config = {**DIGITS, "compile": {**DIGITS["compile"], "optimizer": {"type": "sgd", "lr": 1e30}}}
    text = assert_refused(cli("fit", write(tmp_path, config), "--run-dir", "run"), "loss became", code=1)
    assert "No checkpoint was saved" in text and "keep the weights" not in text
    assert not (tmp_path / "run" / "last.pt").exists()
