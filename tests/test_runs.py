"""`dltrain runs` and `dltrain runs compare`: status, results and differences read from real runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, tiny_digits_config, write_config


def _runs_json(cli, *args: str) -> list[dict]:
    result = cli("runs", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["runs"]


def test_lists_finished_runs_and_compares_them(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_digits_config(epochs=2))
    assert cli("fit", config, "--run-dir", "runs/tiny/a").exit_code == 0
    assert (
        cli(
            "fit", config, "--run-dir", "runs/tiny/b", "--set", "model.layers[0].units=8", "--set", "fit.epochs=1"
        ).exit_code
        == 0
    )
    found = {Path(r["path"]).name: r for r in _runs_json(cli)}
    assert set(found) == {"a", "b"}
    assert found["a"]["status"] == "finished" and found["a"]["epochs"] == 2 and found["a"]["max_epochs"] == 2
    assert found["a"]["monitor"] == "val_loss" and found["a"]["best"] > 0
    assert 0 <= found["b"]["test"]["accuracy"] <= 1

    result = cli("runs", "compare", "runs/tiny/a", "runs/tiny/b", "--json", "--plot", "compare.png")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["config"] == {"model.layers[0].units": [32, 8], "fit.epochs": [2, 1]}
    assert report["results"]["epochs"] == [2, 1]
    assert (tmp_path / "compare.png").stat().st_size > 1000
    shown = cli("runs", "compare", "runs/tiny/a", "runs/tiny/b")
    assert "model.layers[0].units" in shown.stdout and "test_accuracy" in shown.stdout


def test_bad_arguments_are_one_clear_message(cli, tmp_path: Path) -> None:
    result = cli("runs", "nowhere")
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "x").mkdir()
    result = cli("runs", "compare", "x", "x")
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_status_of_running_interrupted_and_failed_runs(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_digits_config(epochs=500, batch_size=8))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    live = subprocess.Popen(
        [sys.executable, "-m", "dltrain", "fit", str(config), "--run-dir", "runs/live"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not (tmp_path / "runs/live/history.csv").exists():
            assert live.poll() is None and time.time() < deadline
            time.sleep(0.2)
        assert [r["status"] for r in _runs_json(cli)] == ["running"]  # no lock file: it writes, so it runs
        (tmp_path / "runs/live/run.lock").write_text(f"{live.pid}\n")  # a lock naming a live holder
        assert [r["status"] for r in _runs_json(cli, "runs/live")] == ["running"]
        live.send_signal(signal.SIGINT)
        assert live.wait(timeout=60) == 130
    finally:
        if live.poll() is None:
            live.kill()
    assert [r["status"] for r in _runs_json(cli)] == ["interrupted"]  # the lock names a dead process now

    # a run that diverges stops on an error, which its train.log records
    diverging = {
        "seed": 0,
        "data": {"source": "synthetic", "num_samples": 400, "shape": [8], "regression": True},
        "model": {"layers": [{"type": "Dense", "units": 16, "activation": "relu"}, {"type": "Dense", "units": 1}]},
        "compile": {"optimizer": {"type": "sgd", "lr": 50}, "loss": "mse"},
        "fit": {"epochs": 2, "batch_size": 16, "device": "cpu"},
    }
    assert cli("fit", write_config(tmp_path, diverging, "nan.yaml"), "--run-dir", "runs/nan").exit_code == 1
    status = {Path(r["path"]).name: r["status"] for r in _runs_json(cli)}
    assert status == {"live": "interrupted", "nan": "failed"}
