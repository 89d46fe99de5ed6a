"""Real training runs: the shipped configs, the accuracy digits_mlp must reach, checkpoints."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONFIGS, tiny_digits_config, write_config

from dltrain import api
from dltrain.config import load_config
from dltrain.presets import presets

# Presets whose data ships with dltrain (others need files the user brings; their own
# tests build those files).
SELF_CONTAINED = sorted(
    name
    for name, path in presets().items()
    if load_config(path).resolved()["data"]["source"] in ("digits", "synthetic")  # merged with its base
)


def test_tutorial_presets_are_shipped() -> None:
    for name in ("digits_mlp", "digits_dropout", "digits_cnn", "digits_rnn", "synthetic_sequence_regression"):
        path = CONFIGS / f"{name}.yaml"
        assert path.is_file(), name
        assert path.read_text().startswith(f"# dltrain fit configs/{name}.yaml"), name


@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_shipped_config_validates_and_trains_a_few_steps(cli, tmp_path: Path, name: str) -> None:
    result = cli(
        "fit", CONFIGS / f"{name}.yaml", "--set", "fit.epochs=1", "--device", "cpu", "--run-dir", tmp_path / "run"
    )
    assert result.exit_code == 0, result.output
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 2
    loss = float(history[1].split(",")[1])
    assert loss == loss and loss < 1e6  # finite


@pytest.mark.slow
def test_digits_mlp_reaches_095_test_accuracy(cli, tmp_path: Path) -> None:
    result = cli("fit", CONFIGS / "digits_mlp.yaml", "--device", "cpu", "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    report = cli("evaluate", tmp_path / "run" / "best.pt", "--json", "--device", "cpu")
    assert report.exit_code == 0, report.output
    accuracy = json.loads(report.stdout)["accuracy"]
    assert accuracy >= 0.95, accuracy


def test_synthetic_regression_learns(tmp_path: Path) -> None:
    config = {
        "seed": 1,
        "data": {"source": "synthetic", "num_samples": 600, "shape": [8], "regression": True},
        "model": {"layers": [{"type": "Dense", "units": 32, "activation": "tanh"}, {"type": "Dense", "units": 1}]},
        "compile": {"optimizer": {"type": "adam", "learning_rate": 0.01}, "loss": "mse", "metrics": ["mae"]},
        "fit": {"epochs": 15, "batch_size": 32, "device": "cpu"},
    }
    result = api.fit(write_config(tmp_path, config), run_dir=tmp_path / "run")
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    assert last < 0.3 * first
    targets = api.restore(tmp_path / "run" / "best.pt").data.test.y
    assert result.results["test"]["loss"] < 0.5 * targets.var().item()  # loss is the MSE


def test_checkpoint_is_plain_data_and_evaluate_reproduces_final_metrics(cli, tmp_path: Path) -> None:
    result = api.fit(write_config(tmp_path, tiny_digits_config(epochs=3)), run_dir=tmp_path / "run")
    payload = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    for key in ("config", "model", "optimizer", "epoch", "rng", "class_names", "preprocessing", "history", "version"):
        assert key in payload, key
    assert payload["class_names"] == [str(i) for i in range(10)]
    report = cli("evaluate", tmp_path / "run" / "last.pt", "--json", "--device", "cpu")
    data = json.loads(report.stdout)
    assert data["accuracy"] == pytest.approx(result.results["test"]["accuracy"])
    assert data["loss"] == pytest.approx(result.results["test"]["loss"], rel=1e-5)
    val = json.loads(cli("evaluate", tmp_path / "run" / "last.pt", "--split", "val", "--json").stdout)
    assert val["accuracy"] == pytest.approx(result.results["val"]["accuracy"])
    per_class = data["per_class"]
    assert set(per_class) == {str(i) for i in range(10)}
    assert sum(c["support"] for c in per_class.values()) == data["samples"]


def test_evaluate_human_report_shows_confusion_matrix(cli, tmp_path: Path) -> None:
    api.fit(write_config(tmp_path, tiny_digits_config(epochs=1)), run_dir=tmp_path / "run")
    result = cli("evaluate", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "Confusion matrix" in result.stdout and "precision" in result.stdout


def test_same_seed_same_result(tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_digits_config(epochs=2))
    first = api.fit(config, run_dir=tmp_path / "a").history
    second = api.fit(config, run_dir=tmp_path / "b").history
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(first) == strip(second)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_seedless_config_records_the_seed_it_drew(tmp_path: Path) -> None:
    config = tiny_digits_config(epochs=1)
    del config["seed"]
    api.fit(write_config(tmp_path, config), run_dir=tmp_path / "run")
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert isinstance(resolved["seed"], int)


def test_checkpoint_that_needs_unpickling_is_refused(cli, tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        torch.save({"format": "dltrain-checkpoint-1", "payload": Path("x")}, handle, pickle_module=pickle)
    result = cli("evaluate", evil)
    assert result.exit_code == 2
    assert "never unpickles" in result.stderr


def test_corrupt_or_missing_checkpoint_is_a_clear_error(cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    result = cli("evaluate", broken)
    assert result.exit_code == 2 and "not a readable checkpoint" in result.stderr
    missing = cli("evaluate", tmp_path / "nothing.pt")
    assert missing.exit_code == 2 and "no checkpoint" in missing.stderr


def test_fit_prints_summary_epochs_and_run_directory(cli, tmp_path: Path) -> None:
    result = cli("fit", write_config(tmp_path, tiny_digits_config(epochs=2)), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0
    out = result.stdout
    assert "Total params" in out and "Epoch   1" in out and "Epoch   2" in out
    assert "val_accuracy" in out and f"Run directory: {tmp_path / 'run'}" in out


def test_python_dash_m_works(cli) -> None:
    result = cli.subprocess("--help")
    assert result.returncode == 0
    assert "fit" in result.stdout and "evaluate" in result.stdout


def test_schema_and_list_models(cli) -> None:
    schema = json.loads(cli("schema").stdout)
    assert set(schema["properties"]) >= {"data", "model", "compile", "fit"}
    listing = json.loads(cli("list-models", "--json").stdout)
    names = {kind: {e["name"] for e in entries} for kind, entries in listing.items()}
    assert {"Dense", "Conv2D", "LSTM"} <= names["layers"]
    assert {"digits", "synthetic", "npz"} <= names["sources"]
    assert "digits_mlp" in names["presets"]
    assert cli("list-models").exit_code == 0
