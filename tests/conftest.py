"""Shared test helpers: write small configs, run the real CLI (in-process or as a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dltrain.cli import app

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def output_of(result: Any) -> tuple[int, str]:
    """(exit code, everything printed) of an in-process or subprocess run."""
    if hasattr(result, "returncode"):
        return result.returncode, result.stdout + result.stderr
    return result.exit_code, result.output


def assert_refused(result: Any, *words: str, code: int = 2) -> str:
    """Exit `code` (2: bad input), one error message naming `words`, no traceback."""
    exit_code, text = output_of(result)
    assert exit_code == code, text
    assert "Traceback" not in text, text
    assert text.count("error:") == 1, text
    for word in words:
        assert word in text, text
    return text


def write_config(directory: Path, config: dict[str, Any], name: str = "config.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def tiny_digits_config(**fit: Any) -> dict[str, Any]:
    """A small, fast digits MLP config (override fit keys by keyword)."""
    return {
        "name": "tiny",
        "seed": 0,
        "data": {"source": "digits", "normalize": "scale"},
        "model": {
            "layers": [
                {"type": "Dense", "units": 32, "activation": "relu"},
                {"type": "Dense", "units": 10, "activation": "softmax"},
            ]
        },
        "compile": {"optimizer": "adam", "loss": "categorical_crossentropy", "metrics": ["accuracy"]},
        "fit": {"epochs": 2, "batch_size": 64, "validation_split": 0.2, "device": "cpu", **fit},
    }


class Cli:
    """Run `dltrain` through Typer's runner (fast) or a real subprocess."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str | Path) -> Any:
        return self.runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    def subprocess(
        self,
        *args: str | Path,
        cwd: Path | None = None,
        timeout: float = 300,
        launcher: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`python [LAUNCHER...] -m dltrain ARGS` (e.g. launcher `-m torch.distributed.run ...`), with extra `env`."""
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
        return subprocess.run(
            [sys.executable, *launcher, "-m", "dltrain", *map(str, args)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own folder, so `runs/` never lands in the repository."""
    monkeypatch.chdir(tmp_path)
