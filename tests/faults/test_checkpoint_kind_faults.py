"""Fault injection, a file of another kind where a checkpoint is read or written: an export
(TorchScript, pt2) given to the commands that load checkpoints, a language model given to `predict`
or `serve`, and `export -o` aimed at a run's other checkpoint, each one message and exit 2 with the
run's files left byte for byte as they were.

In-process through conftest's `cli`, and once as a real process (the `faults` fixture), where a
warning torch prints while reading a file would show as a second message.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dltrain import api
from dltrain.export import export

LOADERS = {  # (checkpoint, a sample file) -> arguments of each command that loads a checkpoint
    "evaluate": lambda ckpt, sample: ["evaluate", ckpt],
    "predict": lambda ckpt, sample: ["predict", ckpt, sample],
    "generate": lambda ckpt, sample: ["generate", ckpt, "--prompt", "a", "--max-tokens", "2"],
    "fit --resume": lambda ckpt, sample: ["fit", "--resume", ckpt],
    "export": lambda ckpt, sample: ["export", ckpt, "--format", "onnx", "-o", ckpt.with_name("out.onnx")],
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> dict[str, Path]:
    """The suite's tiny run exported to TorchScript and pt2 (in this process: exporting is not under test)."""
    folder = tmp_path_factory.mktemp("exports")
    return {
        "TorchScript": export(tiny_run, "torchscript", folder / "model.ts.pt").path,
        "pt2 (torch.export)": export(tiny_run, "pt2", folder / "model.pt2").path,
    }


def _refused(result: Any, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    for word in words:
        assert word in result.output, result.output


@pytest.mark.parametrize("kind", ["TorchScript", "pt2 (torch.export)"])
@pytest.mark.parametrize("command", list(LOADERS))
def test_an_export_given_for_a_checkpoint_is_named(cli, exports, tmp_path: Path, kind: str, command: str) -> None:
    given = tmp_path / exports[kind].name
    shutil.copy(exports[kind], given)
    np.save(tmp_path / "sample.npy", np.zeros(64, np.float32))
    before = given.read_bytes()
    _refused(cli(*LOADERS[command](given, tmp_path / "sample.npy")), f"is a {kind} export", "best.pt")
    assert given.read_bytes() == before and not (tmp_path / "out.onnx").exists()


def test_a_real_process_shows_only_the_message(faults, exports) -> None:
    """torch warns when it reads a TorchScript archive; the user sees dltrain's one message."""
    faults.run("evaluate", exports["TorchScript"]).failed(2, "is a TorchScript export")


def test_export_will_not_write_over_a_runs_other_checkpoint(faults, tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run.parent, run)
    before = faults.snapshot(run / "best.pt", run / "last.pt")
    for fmt in ("onnx", "torchscript"):
        faults.run("export", run / "best.pt", "--format", fmt, "-o", run / "last.pt").failed(2, "last.pt", "checkpoint")
    faults.unchanged(before)
    assert not (run / "last.pt.json").exists()


def test_predict_and_serve_on_a_language_model_say_to_generate(cli, tmp_path: Path) -> None:
    text = "".join(f"def f{i}(x):\n    return x + {i % 5}\n" for i in range(40))
    (tmp_path / "prose.txt").write_text(text, encoding="utf-8")
    config = {
        "seed": 0,
        "data": {"source": "text_file", "path": "prose.txt", "sequence_length": 8, "tokenizer": {"type": "char"}},
        "model": {
            "layers": [
                {"type": "Embedding", "input_dim": 64, "output_dim": 8},
                {"type": "Dense", "units": "auto"},
            ]
        },
        "compile": {"loss": "sparse_categorical_crossentropy"},
        "fit": {"epochs": 1, "batch_size": 32, "device": "cpu"},
    }
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    api.fit(tmp_path / "lm.yaml", run_dir=tmp_path / "lm")
    np.save(tmp_path / "ids.npy", np.ones((3, 8), np.int64))
    _refused(cli("predict", tmp_path / "lm", tmp_path / "ids.npy"), "language model", "dltrain generate")
    _refused(cli("serve", tmp_path / "lm", "--port", "0"), "language model", "dltrain generate")
