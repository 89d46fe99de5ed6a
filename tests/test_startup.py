"""Start-up: commands that build nothing import no torch; naming no backbone imports no torchvision.

Each command runs as a real subprocess under `python -X importtime`, whose report on
stderr lists every module imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFIGS, REPO


def imported(*args: str | Path, cwd: Path) -> set[str]:
    """The modules `python -m dltrain ARGS` imports (the command must succeed)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dltrain", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["schema"], ["init", "--list"], ["fit", "--help"], ["init", "digits_mlp"]]
)
def test_commands_that_build_nothing_import_no_torch(args: list[str], tmp_path: Path) -> None:
    modules = imported(*args, cwd=tmp_path)
    assert "dltrain.cli" in modules  # the report is real
    assert not {"torch", "tokenizers"} & modules


def test_list_models_imports_no_torch(tmp_path: Path) -> None:
    modules = imported("list-models", "--json", cwd=tmp_path)
    assert "dltrain.catalog" in modules
    assert not {"torch", "torchvision"} & modules


def test_check_imports_torchvision_only_for_a_backbone(tmp_path: Path) -> None:
    plain = imported("check", CONFIGS / "digits_mlp.yaml", cwd=tmp_path)
    assert "torch" in plain and "torchvision" not in plain
    backbone = imported("check", CONFIGS / "digits_vgg16.yaml", "--set", "model.layers[0].weights=null", cwd=tmp_path)
    assert "torchvision" in backbone
