"""Tabular and time-series CSV sources on real files, and `predict` on CSV rows and arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from conftest import tiny_digits_config, write_config
from data_files import write_series, write_table
from sklearn.datasets import load_digits

from dltrain import api
from dltrain.build import prepare


def table_config(data: dict, units: int, loss: str, metrics: list[str], **fit) -> dict:
    return {
        "name": "table",
        "seed": 0,
        "data": data,
        "model": {
            "layers": [
                {"type": "Dense", "units": 16, "activation": "relu"},
                {"type": "Dense", "units": units, "activation": "softmax" if "crossentropy" in loss else "linear"},
            ]
        },
        "compile": {"optimizer": {"type": "adam", "lr": 0.01}, "loss": loss, "metrics": metrics},
        "fit": {"epochs": 30, "batch_size": 32, "validation_split": 0.2, "device": "cpu", **fit},
    }


def test_csv_classification_with_class_names_and_a_categorical_column(cli, tmp_path: Path) -> None:
    write_table(tmp_path / "flowers.csv")
    data = {
        "source": "csv",
        "path": "flowers.csv",
        "target": "species",
        "features": ["petal_length", "petal_width", "soil"],
        "normalize": "standardize",
    }
    config = table_config(data, 3, "categorical_crossentropy", ["accuracy"])
    result = cli("fit", write_config(tmp_path, config), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    checkpoint = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert checkpoint["class_names"] == ["setosa", "versicolor", "virginica"]
    assert checkpoint["input_shape"] == [5]  # 2 numbers + 3 one-hot soils
    assert checkpoint["preprocessing"]["table"]["categories"] == {"soil": ["clay", "loam", "sand"]}
    report = json.loads(cli("evaluate", tmp_path / "run", "--json").stdout)
    assert report["accuracy"] >= 0.9

    (tmp_path / "new.csv").write_text("soil,petal_width,petal_length\nclay,0.3,1.4\npeat,2.0,5.6\n")
    result = cli("predict", tmp_path / "run", tmp_path / "new.csv", "--json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)["predictions"]
    assert [p["input"] for p in predictions] == [0, 1]  # an unseen soil ('peat') is all zeros, not an error
    assert [p["prediction"] for p in predictions] == ["setosa", "virginica"]


def test_csv_regression_from_every_other_column(tmp_path: Path) -> None:
    write_table(tmp_path / "flowers.csv")
    data = {"source": "csv", "path": "flowers.csv", "target": "height", "normalize": "standardize"}
    config = table_config(data, 1, "mse", ["mae"], epochs=40)
    result = api.fit(write_config(tmp_path, config), run_dir=tmp_path / "run")
    heights = np.loadtxt(tmp_path / "flowers.csv", delimiter=",", skiprows=1, usecols=4)
    guessing_the_mean = np.abs(heights - heights.mean()).mean()  # about 4
    assert result.results["test"]["mae"] < 0.35 * guessing_the_mean


def test_csv_problems_name_the_line_and_column(cli, tmp_path: Path) -> None:
    path = write_table(tmp_path / "flowers.csv", count=20)
    lines = path.read_text().splitlines()
    lines[7] = lines[7].replace(lines[7].split(",")[1], "", 1)
    path.write_text("\n".join(lines) + "\n")
    data = {"source": "csv", "path": "flowers.csv", "target": "species"}
    result = cli("check", write_config(tmp_path, table_config(data, 3, "categorical_crossentropy", [])))
    assert result.exit_code == 2
    assert "line 8, column 'petal_width': missing value" in result.output

    lines[7] = lines[7].replace(",,", ",wide,")
    path.write_text("\n".join(lines) + "\n")
    result = cli("check", write_config(tmp_path, table_config(data, 3, "categorical_crossentropy", [])))
    assert result.exit_code == 2 and "line 8, column 'petal_width': 'wide' is not a number" in result.output

    data["target"] = "specie"
    result = cli("check", write_config(tmp_path, table_config(data, 3, "categorical_crossentropy", [])))
    assert result.exit_code == 2 and "Did you mean 'species'?" in result.output

    data["target"] = "species"
    write_table(tmp_path / "flowers.csv", count=20)
    result = cli("check", write_config(tmp_path, table_config(data, 1, "mse", [])))
    assert result.exit_code == 2 and "class names" in result.output


def test_timeseries_windows_are_chronological_and_an_rnn_learns_them(cli, tmp_path: Path) -> None:
    write_series(tmp_path / "load.csv")
    data = {
        "source": "timeseries_csv",
        "path": "load.csv",
        "target": "load",
        "window": 12,
        "horizon": 3,
        "normalize": "standardize",
    }
    config = {
        "name": "series",
        "seed": 0,
        "data": data,
        "model": {"layers": [{"type": "GRU", "units": 16}, {"type": "Dense", "units": 1}]},
        "compile": {"optimizer": {"type": "adam", "lr": 0.01}, "loss": "mse", "metrics": ["mae"]},
        "fit": {"epochs": 25, "batch_size": 32, "validation_split": 0.2, "device": "cpu"},
    }
    path = write_config(tmp_path, config)
    loaded, built = api.check(path)
    assert built.input_shape == (12, 2)  # [window, features]: temp and load; the date column is not numeric
    bundle, _ = prepare(loaded)
    series = np.loadtxt(tmp_path / "load.csv", delimiter=",", skiprows=1, usecols=(1, 2))
    targets = [bundle.train.y, bundle.val.y, bundle.test.y]
    assert len(bundle.test) == round(386 * 0.2) and len(bundle.val) == round(309 * 0.2)
    flat = torch.cat(targets).numpy().ravel()
    assert np.allclose(flat, series[14:, 1].astype(np.float32), atol=1e-5)  # train, val, test in time order
    mean = bundle.preprocessing.mean.numpy().ravel()
    assert np.allclose(mean, series[: 247 + 11].mean(axis=0), atol=0.05)  # statistics of training rows only

    result = cli("fit", path, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    report = json.loads(cli("evaluate", tmp_path / "run", "--json").stdout)
    assert report["mae"] < 0.15  # the load spans about -1 to 2

    result = cli("predict", tmp_path / "run", tmp_path / "load.csv", "--json")
    predictions = json.loads(result.stdout)["predictions"]
    assert len(predictions) == 400 - 12 + 1 and predictions[0]["input"] == 11
    assert abs(predictions[100]["prediction"] - series[111 + 3, 1]) < 0.3


def test_predict_arrays_and_wrong_shapes(cli, tmp_path: Path) -> None:
    result = cli("fit", write_config(tmp_path, tiny_digits_config(epochs=15)), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    digits = load_digits()
    np.save(tmp_path / "one.npy", digits.data[0])
    np.savez(tmp_path / "many.npz", x=digits.data[:20])
    result = cli("predict", tmp_path / "run", tmp_path / "one.npy", tmp_path / "many.npz", "--json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)["predictions"]
    assert predictions[0]["input"] == "one.npy" and [p["input"] for p in predictions[1:]] == list(range(20))
    correct = sum(p["prediction"] == str(t) for p, t in zip(predictions[1:], digits.target[:20]))
    assert correct >= 16

    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    result = cli("predict", tmp_path / "run", tmp_path / "bad.npy")
    assert result.exit_code == 2 and "[3, 5]" in result.output and "[64]" in result.output
    (tmp_path / "notes.doc").write_text("hello")  # (.txt is text, for text models)
    result = cli("predict", tmp_path / "run", tmp_path / "notes.doc")
    assert result.exit_code == 2 and "unknown input type" in result.output
    result = cli("predict", tmp_path / "run", tmp_path / "missing.png")
    assert result.exit_code == 2 and "missing.png" in result.output
