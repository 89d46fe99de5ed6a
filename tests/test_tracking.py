"""Tracking callbacks against real stores: MLflow (local SQLite, and a real `mlflow server`), W&B offline."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import tiny_digits_config, write_config

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")


def _read_back(uri: str, experiment: str) -> tuple[object, object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def _steps(client, run, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run.info.run_id, key)]


def test_mlflow_logs_config_every_epoch_and_files_and_resume_continues_the_run(cli, tmp_path: Path) -> None:
    callback = {
        "type": "MLflow",
        "log_checkpoints": True,
    }  # default store: mlruns.db here; experiment: the config's name
    config = write_config(tmp_path, tiny_digits_config(epochs=2, callbacks=[callback]))
    assert cli("fit", config, "--run-dir", "run").exit_code == 0
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client, run = _read_back(uri, "tiny")
    assert run.info.status == "FINISHED"
    assert run.data.params["model.layers.0.units"] == "32" and run.data.params["fit.epochs"] == "2"
    assert _steps(client, run, "val_loss") == [1, 2] and _steps(client, run, "accuracy") == [1, 2]
    assert 0 <= run.data.metrics["test_accuracy"] <= 1
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "history.csv", "metrics.json", "curves.png"} <= files
    assert {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")} == {
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    }

    assert cli("fit", "--resume", "run", "--set", "fit.epochs=3").exit_code == 0
    client, resumed = _read_back(uri, "tiny")  # still one run: the same one, continued
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert _steps(client, resumed, "val_loss") == [1, 2, 3]
    assert resumed.data.tags["resumed.fit.epochs"] == "3"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_mlflow_logs_to_a_real_tracking_server(cli, tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        callback = {"type": "MLflow", "tracking_uri": uri, "experiment": "served"}
        config = write_config(tmp_path, tiny_digits_config(epochs=2, callbacks=[callback]))
        assert cli("fit", config, "--run-dir", "run").exit_code == 0
        client, run = _read_back(uri, "served")
        assert _steps(client, run, "val_accuracy") == [1, 2]
        assert "metrics.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert list((tmp_path / "server-artifacts").rglob("metrics.json"))  # uploaded through the server
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_wandb_offline_logs_every_epoch_and_resume_continues_the_run(cli, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    config = write_config(tmp_path, tiny_digits_config(epochs=2, callbacks=[{"type": "WandB", "project": "p"}]))
    assert cli("fit", config, "--run-dir", "run").exit_code == 0
    first = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(first) == 1
    run_id = first[0].name.rsplit("-", 1)[-1]
    assert cli("fit", "--resume", "run", "--set", "fit.epochs=3").exit_code == 0
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert {r.name.rsplit("-", 1)[-1] for r in runs} == {run_id}  # the same W&B run id, resumed
    deadline = time.time() + 60  # wandb's writer process may still be flushing the resumed run's file
    while (steps := sorted(step for r in runs for step in _wandb_steps(r))) != [1, 2, 3] and time.time() < deadline:
        time.sleep(0.5)
    assert steps == [1, 2, 3]
    assert any((r / "files" / "metrics.json").is_file() for r in runs)


def _wandb_steps(folder: Path) -> list[int]:
    """The step of every history row in an offline run's .wandb file (a LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    data = next(folder.glob("*.wandb")).read_bytes()
    block, position, record, steps = 32768, 7, b"", []  # after the 7-byte file header
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        record += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            parsed = wandb_internal_pb2.Record()
            parsed.ParseFromString(record)
            if parsed.WhichOneof("record_type") == "history":
                steps += [int(i.value_json) for i in parsed.history.item if "_step" in (i.key, *i.nested_key)]
            record = b""
    return steps


def test_a_missing_online_login_is_a_config_error_not_a_prompt(cli, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    config = write_config(tmp_path, tiny_digits_config(callbacks=[{"type": "WandB", "mode": "online"}]))
    result = cli("fit", config)
    assert result.exit_code == 2 and "wandb login" in result.output and "fit.callbacks[0]" in result.output
    assert not (tmp_path / "runs").exists()
