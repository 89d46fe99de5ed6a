"""Signals: SIGTERM (a scheduler's notice) and Ctrl-C in every phase, to real processes.

Each ends with exit 130 (Ctrl-C) or 143 (SIGTERM), one line on stderr, no traceback,
and nothing half-written.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic-data classifier's best.pt (data regenerated from the config, so it can be made big)."""
    from dltrain import api

    folder = tmp_path_factory.mktemp("trained")
    config = folder / "synthetic.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "synthetic",
                "seed": 0,
                "data": {"source": "synthetic", "num_samples": 200, "shape": [20], "num_classes": 3},
                "model": {
                    "layers": [
                        {"type": "Dense", "units": 8, "activation": "relu"},
                        {"type": "Dense", "units": 3, "activation": "softmax"},
                    ]
                },
                "compile": {"loss": "categorical_crossentropy", "metrics": ["accuracy"]},
                "fit": {"epochs": 1, "batch_size": 64, "device": "cpu"},
            }
        )
    )
    return api.fit(config, run_dir=folder / "run").run_dir / "best.pt"


def test_sigterm_mid_fit_checkpoints_and_exits_143(faults, tmp_path: Path) -> None:
    fit = faults.start("fit", faults.config(epochs=500, batch_size=16), "--run-dir", "run")
    fit.wait_for(tmp_path / "run" / "last.pt")
    fit.signal(signal.SIGTERM)
    outcome = fit.wait()
    assert outcome.failed(143) == "terminated (SIGTERM)"
    assert "Terminated (SIGTERM) at " in outcome.stdout and "dltrain fit --resume run" in outcome.stdout
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert saved["epoch"] >= 1 and saved["epoch"] < 500
    faults.no_temp_files(tmp_path / "run")


def test_a_double_ctrl_c_exits_130_at_once(faults, tmp_path: Path) -> None:
    fit = faults.start("fit", faults.config(epochs=500, batch_size=16), "--run-dir", "run")
    fit.wait_for(tmp_path / "run" / "last.pt")
    fit.signal(signal.SIGINT)
    time.sleep(0.02)
    fit.signal(signal.SIGINT)
    assert fit.wait().failed(130) == "interrupted"
    faults.no_temp_files(tmp_path / "run")
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] >= 1


def test_ctrl_c_during_start_up_exits_130(faults) -> None:
    process = faults.start("fit", faults.config(), fresh=True)  # a new interpreter: the imports are the start-up
    process.wait_for_library("libtorch")
    process.signal(signal.SIGINT)
    assert process.wait().failed(130) == "interrupted"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_evaluate_ends_it_with_one_line(faults, trained: Path, signum: int) -> None:
    evaluate = faults.start("evaluate", trained, "--set", "data.num_samples=2000000", "--plot", "matrix.png")
    evaluate.wait_busy()
    evaluate.signal(signum)
    assert evaluate.wait().failed(128 + signum) in ("interrupted", "terminated (SIGTERM)")
    assert not Path("matrix.png").exists()


def test_ctrl_c_during_predict_exits_130(faults, trained: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "many.npy", np.random.default_rng(0).standard_normal((300_000, 20), dtype=np.float32))
    predict = faults.start("predict", trained, tmp_path / "many.npy", "--json")
    predict.wait_busy(0.5)
    predict.signal(signal.SIGINT)
    outcome = predict.wait()
    assert outcome.failed(130) == "interrupted"
    assert outcome.stdout == ""  # no half a JSON object


def test_ctrl_c_during_export_exits_130_and_writes_nothing(faults, trained: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in trained.parent.iterdir())
    export = faults.start("export", trained, "--format", "onnx", "-o", tmp_path / "model.onnx")
    export.wait_busy(0.3)
    export.signal(signal.SIGINT)
    assert export.wait().failed(130) == "interrupted"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".process")) == []
    assert sorted(p.name for p in trained.parent.iterdir()) == before
