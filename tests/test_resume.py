"""Exact resume, determinism, Ctrl-C and kill -9: real runs, real signals, real processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, tiny_digits_config, write_config

from dltrain import api
from dltrain.reporting import Reporter
from dltrain.train import checkpoint


def _config(**fit: Any) -> dict[str, Any]:
    """Digits MLP with dropout (so RNG state matters), a schedule with warmup and LR callbacks."""
    config = tiny_digits_config(**fit)
    config["model"]["layers"].insert(1, {"type": "Dropout", "rate": 0.3})
    config["compile"]["lr_schedule"] = {"type": "step", "step_size": 1, "gamma": 0.8, "warmup_epochs": 0.5}
    config["fit"]["callbacks"] = [
        {"type": "ReduceLROnPlateau", "patience": 0, "factor": 0.5, "min_delta": 0.05},
        {"type": "EarlyStopping", "patience": 10, "restore_best_weights": True},
    ]
    return config


def _assert_same_run(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["epoch"] == b["epoch"]
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for index, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][index][key])), key
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert a["scheduler"] == b["scheduler"]


def test_two_epochs_resumed_to_four_equal_four_epochs(cli, tmp_path: Path) -> None:
    four = write_config(tmp_path, _config(epochs=4), "four.yaml")
    two = write_config(tmp_path, _config(epochs=2), "two.yaml")
    assert cli("fit", four, "--run-dir", "full").exit_code == 0
    assert cli("fit", two, "--run-dir", "part").exit_code == 0
    resumed = cli("fit", "--resume", "part", "--set", "fit.epochs=4")
    assert resumed.exit_code == 0, resumed.output
    full = torch.load("full/last.pt", weights_only=True)
    part = torch.load("part/last.pt", weights_only=True)
    _assert_same_run(full, part)
    assert (tmp_path / "part" / "history.csv").read_text().count("\n") == 5  # header + 4 epochs, same directory
    assert full["history"][-1]["lr"] != full["history"][0]["lr"]  # the schedule really ran
    assert (tmp_path / "full" / "metrics.json").read_text() == (tmp_path / "part" / "metrics.json").read_text()


def test_deterministic_runs_are_identical(tmp_path: Path) -> None:
    config = write_config(tmp_path, _config(epochs=2, deterministic=True))
    first = api.fit(config, ["seed=7"], run_dir="a")
    second = api.fit(config, ["seed=7"], run_dir="b")
    _assert_same_run(
        torch.load(first.run_dir / "last.pt", weights_only=True),
        torch.load(second.run_dir / "last.pt", weights_only=True),
    )
    assert not torch.are_deterministic_algorithms_enabled()  # restored after training


class CtrlCAt(Reporter):
    """Press Ctrl-C (a real SIGINT to this process) at one step of one epoch."""

    def __init__(self, epoch: int, step: int) -> None:
        self.at, self.epoch = (epoch, step), 0
        self.messages: list[str] = []

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.epoch = epoch

    def step(self, step, tracker) -> None:  # type: ignore[no-untyped-def]
        if (self.epoch, step) == self.at:
            os.kill(os.getpid(), signal.SIGINT)

    def message(self, text: str) -> None:
        self.messages.append(text)


def test_ctrl_c_mid_epoch_saves_and_resume_is_exact(tmp_path: Path) -> None:
    config = write_config(tmp_path, _config(epochs=3, batch_size=32))
    reporter = CtrlCAt(epoch=2, step=10)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    with pytest.raises(KeyboardInterrupt):
        api.fit(config, run_dir="cut", reporter=reporter)
    saved = checkpoint.load("cut/last.pt")
    assert saved.epoch == 1 and saved.partial["step"] == 10
    assert any("dltrain fit --resume cut" in m for m in reporter.messages)
    assert signal.getsignal(signal.SIGINT) == before  # our handler removed again

    api.fit(resume="cut")
    api.fit(config, run_dir="whole")
    _assert_same_run(torch.load("whole/last.pt", weights_only=True), torch.load("cut/last.pt", weights_only=True))


def _start(config: Path, run: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # a tiny model: threads only contend
    return subprocess.Popen(
        [sys.executable, "-m", "dltrain", "fit", str(config), "--run-dir", run],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(paths: list[Path], process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigint_to_a_real_process_exits_130_with_a_resumable_checkpoint(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_digits_config(epochs=300, batch_size=16))
    process = _start(config, "run")
    _wait_for([tmp_path / "run" / "last.pt"], process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "dltrain fit --resume run" in output
    saved = checkpoint.load("run/last.pt")
    assert 1 <= saved.epoch < 300
    resumed = cli("fit", "--resume", "run", "--set", f"fit.epochs={saved.epoch + 1}")
    assert resumed.exit_code == 0, resumed.output
    assert checkpoint.load("run/last.pt").epoch == saved.epoch + 1


@pytest.mark.slow
def test_kill_9_at_any_moment_leaves_loadable_checkpoints(tmp_path: Path) -> None:
    config = tiny_digits_config(epochs=1000, batch_size=256)
    config["model"]["layers"][0]["units"] = 512  # bigger files: a longer window to be killed inside a write
    process = _start(write_config(tmp_path, config), "run")
    _wait_for([tmp_path / "run" / "last.pt", tmp_path / "run" / "best.pt"], process)
    time.sleep(random.uniform(0.0, 0.5))  # checkpoints are written every epoch (~0.1 s): a kill often lands in one
    process.kill()
    process.wait()
    for name in ("last.pt", "best.pt"):
        payload = checkpoint.load(tmp_path / "run" / name)
        assert payload.epoch >= 1
        assert all(torch.isfinite(t).all() for t in payload.model.values())
