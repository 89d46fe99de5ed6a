"""`dltrain tune`: the tune: block validated with lines, trials as run directories, a study that continues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO, tiny_digits_config, write_config

from dltrain.config import load_config


def _tune_config(**tune) -> dict:
    config = tiny_digits_config(epochs=2)
    config["name"] = "t"
    config["tune"] = {
        "metric": "val_accuracy",
        "pruner": "none",
        "startup_trials": 2,
        "space": {
            "compile.optimizer.lr": {"loguniform": [1.0e-3, 3.0e-2]},
            "model.layers[0].units": {"choice": [8, 32]},
        },
        **tune,
    }
    return config


def _line(path: Path, text: str) -> int:
    """The 1-based line of `path` where `text` first appears."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _study(tmp_path: Path, name: str = "t") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/runs/t/tune-{name}/study.db")


def test_every_bad_key_range_and_metric_is_reported_with_its_line_before_any_trial(cli, tmp_path: Path) -> None:
    malformed = _tune_config(
        space={
            "compile.optimizer.lr": {"loguniform": [0.0, 0.1]},
            "fit.epochs": {"choice": [1], "uniform": [1, 2]},
            "fit.batch_size": {"int": [64, 8]},
        }
    )
    path = write_config(tmp_path, malformed)
    result = cli("tune", path)
    assert result.exit_code == 2, result.output
    for expected in (
        f"config.yaml:{_line(path, 'compile.optimizer.lr')}: tune.space.compile.optimizer.lr: loguniform needs low > 0",
        "tune.space.fit.epochs: give exactly one of",
        "expected low < high; received [64, 8]",
    ):
        assert expected in result.output, expected

    config = _tune_config(
        metric="val_acuracy",
        space={
            "model.layers[0].unit": {"int": [8, 64]},
            "model.layers[0].units": {"int": [0, 64]},
            "fit.validation_split": {"uniform": [0.1, 1.5]},
            "model.layers[7].units": {"choice": [8]},
            "compile.optimizer.lr": {"loguniform": [1.0e-4, 1.0e-2]},
        },
    )
    path = write_config(tmp_path, config)
    result = cli("tune", path)
    assert result.exit_code == 2, result.output
    text = result.output
    for expected in (
        "5 problems",
        f"config.yaml:{_line(path, 'model.layers[0].unit:')}: tune.space.model.layers[0].unit: the value 8 is not accepted",
        "Did you mean 'units'",
        "the value 0 is not accepted",
        "greater than 0",
        "the value 1.5 is not accepted",
        "less than 1",
        "not an item of the list",
        f"config.yaml:{_line(path, 'val_acuracy')}: tune.metric: 'val_acuracy' is not a column",
    ):
        assert expected in text, expected
    assert "compile.optimizer.lr" not in text and "Traceback" not in text
    assert not (tmp_path / "runs").exists()
    result = cli("tune", write_config(tmp_path, tiny_digits_config(), "plain.yaml"))
    assert result.exit_code == 2 and "no `tune:` block" in result.output


def test_trials_are_run_directories_and_a_rerun_continues_the_study(cli, tmp_path: Path) -> None:
    path = write_config(tmp_path, _tune_config())
    result = cli("tune", path, "--trials", "3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    folder = tmp_path / "runs/t/tune-t"
    assert summary["counts"] == {"complete": 3} and summary["direction"] == "maximize"
    for number in range(3):
        trial = folder / f"trial-{number:04d}"
        assert {"config.yaml", "history.csv", "last.pt", "best.pt", "metrics.json", "trial.json"} <= {
            f.name for f in trial.iterdir()
        }
        assert json.loads((trial / "trial.json").read_text())["state"] == "complete"
    best = load_config(folder / "best.yaml")  # ready for `dltrain fit`, without the tune block
    assert best.config.tune is None
    assert best.config.model.layers[0].units == summary["best"]["params"]["model.layers[0].units"]
    assert best.config.compile.optimizer.lr == summary["best"]["params"]["compile.optimizer.lr"]
    assert (folder / "history.png").stat().st_size > 1000 and (folder / "importances.png").stat().st_size > 1000
    assert len((folder / "trials.csv").read_text().splitlines()) == 4

    result = cli("tune", path, "--trials", "1")  # the same study, one more trial
    assert result.exit_code == 0, result.output
    assert len(_study(tmp_path).trials) == 4 and (folder / "trial-0003" / "metrics.json").is_file()
    runs = json.loads(cli("runs", "--json").stdout)["runs"]
    assert len(runs) == 4 and {r["status"] for r in runs} == {"finished"}


@pytest.mark.slow
def test_ctrl_c_marks_running_trials_failed_and_a_rerun_continues(cli, tmp_path: Path) -> None:
    path = write_config(tmp_path, _tune_config(pruner="median", warmup_epochs=0))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "dltrain", "tune", str(path), "--trials", "40", "--jobs", "2", "--set", "fit.epochs=30"],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 240
        while not list((tmp_path / "runs/t/tune-t").glob("trial-*/history.csv")):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.time() < deadline
            time.sleep(0.3)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        assert process.wait(timeout=120) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    states = [t.state.name for t in _study(tmp_path).trials]
    assert "RUNNING" not in states and "FAIL" in states, states
    before = len(states)
    result = cli("tune", path, "--trials", "1", "--set", "fit.epochs=1")
    assert result.exit_code == 0, result.output
    assert len(_study(tmp_path).trials) == before + 1


def _postgres_runner() -> list[str]:
    """The prefix that runs PostgreSQL's tools (as the postgres user when we are root); skips when there are none."""
    import pwd
    import shutil

    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        pytest.skip(
            "no PostgreSQL server on this machine (initdb, pg_ctl); apt-get install postgresql to run this test"
        )
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'dltrain[postgres]')")
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run the PostgreSQL server as")
    return ["runuser", "-u", "postgres", "--"]


@pytest.mark.slow
def test_postgresql_storage_shares_one_study_between_folders(cli, tmp_path: Path) -> None:
    import shutil
    import socket
    import tempfile

    runner = _postgres_runner()
    data = Path(tempfile.mkdtemp(prefix="dltrain-pg-"))  # outside tmp_path: the postgres user must reach it
    if runner:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    try:
        subprocess.run(
            [*runner, "initdb", "-D", str(data / "db"), "-A", "trust", "-U", "dltrain"], check=True, capture_output=True
        )
        subprocess.run(
            [
                *runner,
                "pg_ctl",
                "-D",
                str(data / "db"),
                "-w",
                "-l",
                str(data / "log"),
                "-o",
                f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        url = f"postgresql://dltrain@127.0.0.1:{port}/postgres"
        for machine in ("a", "b"):  # two folders (machines) adding trials to one study
            (tmp_path / machine).mkdir()
            path = write_config(tmp_path / machine, _tune_config(startup_trials=1))
            os.chdir(tmp_path / machine)
            result = cli("tune", path, "--trials", "1", "--storage", url, "--study", "shared")
            assert result.exit_code == 0, result.output
        study = optuna.load_study(study_name="shared", storage=url)
        assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
        assert (tmp_path / "a/runs/t/tune-shared/trial-0000").is_dir() and (
            tmp_path / "b/runs/t/tune-shared/trial-0001"
        ).is_dir()
    finally:
        subprocess.run(
            [*runner, "pg_ctl", "-D", str(data / "db"), "-m", "immediate", "stop"], capture_output=True, check=False
        )
        shutil.rmtree(data, ignore_errors=True)
