"""Named inputs from a CSV: categorical columns, class names per output, held-out files, and evaluate's
regression report per output (checked against scikit-learn on the model's own predictions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import write_config
from sklearn import metrics as sk

from dltrain import api
from dltrain.train import checkpoint

SPECIES = ["setosa", "versicolor", "virginica"]
HEADER = "petal_length,soil,zone,petal_width,species,height"


def flowers(count: int, seed: int, soils: tuple[str, ...] = ("clay", "loam", "sand")) -> list[list[str]]:
    """Rows of HEADER: the species shows in the lengths and the soil; the height is a sum of the lengths."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        kind = int(rng.integers(0, 3))
        soil = soils[kind % len(soils)] if rng.random() < 0.8 else str(rng.choice(soils))
        length, width = 1.5 + 2.0 * kind + rng.normal(0, 0.4), 0.3 + 0.8 * kind + rng.normal(0, 0.2)
        zone = int(rng.integers(1, 4))
        height = (3 * length + 2 * width + zone) / 10 + rng.normal(0, 0.05)
        rows.append([f"{length:.3f}", soil, str(zone), f"{width:.3f}", SPECIES[kind], f"{height:.3f}"])
    return rows


def write(path: Path, rows: list[list[str]], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n", encoding="utf-8")
    return path


def config(**data: Any) -> dict[str, Any]:
    """Two named inputs (a categorical column in each) and two outputs: the species (names) and the height."""
    return {
        "name": "tables",
        "seed": 0,
        "data": {
            "source": "csv",
            "path": "train.csv",
            "validation_path": "val.csv",
            "test_path": "test.csv",
            "inputs": {"plant": ["petal_length", "soil"], "place": ["zone", "petal_width"]},
            "target": {"species": "species", "height": "height"},
            "categorical": ["zone"],
            "normalize": "standardize",
            **data,
        },
        "model": {
            "inputs": {"plant": [4], "place": [4]},
            "layers": [
                {"name": "joined", "type": "Concatenate", "inputs": ["plant", "place"]},
                {"type": "Dense", "units": 16, "activation": "relu"},
                {"name": "species", "type": "Dense", "units": 3, "activation": "softmax"},
                {"name": "height", "type": "Dense", "units": 1, "inputs": "joined"},
            ],
            "outputs": ["species", "height"],
        },
        "compile": {
            "optimizer": {"type": "adam", "lr": 0.05},
            "loss": {"species": "categorical_crossentropy", "height": "mse"},
            "metrics": {"species": ["accuracy"]},
        },
        "fit": {"epochs": 12, "batch_size": 32, "device": "cpu"},
    }


def onehot(values: list[str], categories: list[str]) -> np.ndarray:
    return np.array([[float(v == c) for c in categories] for v in values])


def test_categorical_columns_class_names_and_held_out_files_train_and_evaluate(cli, tmp_path: Path) -> None:
    train = flowers(240, seed=0)
    write(tmp_path / "train.csv", train)
    val = flowers(60, seed=1, soils=("clay", "loam", "sand", "peat"))  # peat: never seen in training
    write(tmp_path / "val.csv", val)
    test = flowers(50, seed=2)
    write(tmp_path / "test.csv", test)
    fitted = cli("fit", write_config(tmp_path, config()), "--run-dir", "run")
    assert fitted.exit_code == 0, fitted.output

    saved = checkpoint.load("run/best.pt")
    prep = saved.preprocessing["inputs"]
    assert prep["plant"]["table"]["categories"] == {"soil": ["clay", "loam", "sand"]}  # training's only
    assert prep["place"]["table"]["categories"] == {"zone": ["1", "2", "3"]}
    assert {h["name"]: h["class_names"] for h in saved.outputs or []}["species"] == SPECIES
    # standardization from the training file only (validation and test are their own files here)
    plant = np.column_stack([[float(r[0]) for r in train], onehot([r[1] for r in train], ["clay", "loam", "sand"])])
    assert prep["plant"]["mean"].reshape(-1).numpy() == pytest.approx(plant.mean(axis=0), rel=1e-5, abs=1e-6)
    assert prep["plant"]["std"].reshape(-1).numpy() == pytest.approx(plant.std(axis=0, ddof=1), rel=1e-5)

    trainer = api.restore("run/best.pt")
    assert len(trainer.data.val) == 60 and len(trainer.data.test) == 50
    peat = [i for i, r in enumerate(val) if r[1] == "peat"]
    raw_val = trainer.data.val.x["plant"] * prep["plant"]["std"] + prep["plant"]["mean"]  # undo standardize
    assert peat and torch.allclose(raw_val[peat, 1:], torch.zeros(len(peat), 3), atol=1e-5)  # unseen: all zeros

    report = json.loads(cli("evaluate", "run", "--json").stdout)
    assert report["samples"] == 50 and list(report["per_class"]["species"]) == SPECIES
    assert report["species_accuracy"] >= 0.8
    with torch.no_grad():
        truth = trainer.data.test.y["height"].numpy()
        predicted = trainer.network(trainer.data.test.x)["height"].numpy()
    assert report["height_rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(truth, predicted)), rel=1e-4)
    assert report["height_mae"] == pytest.approx(sk.mean_absolute_error(truth, predicted), rel=1e-4)
    assert report["height_r2"] == pytest.approx(sk.r2_score(truth, predicted), rel=1e-4)
    assert report["height_r2"] > 0.5  # it learned something
    assert "species_rmse" not in report  # a classifying output gets its own report, not a regression one
    table = cli("evaluate", "run")
    assert table.exit_code == 0 and "height_r2" in table.output

    predicted = cli("predict", "run", "test.csv", "val.csv", "--json")  # CSVs with the training columns
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.stdout)["predictions"]
    assert len(rows) == 110 and {r["prediction"]["species"] for r in rows} <= set(SPECIES)
    hits = [r["prediction"]["species"] == row[4] for r, row in zip(rows, test + val)]
    assert sum(hits) >= 0.8 * len(hits)


def refused(cli, tmp_path: Path, **data: Any) -> str:
    result = cli("fit", write_config(tmp_path, config(**data)), "--run-dir", "refused")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not (tmp_path / "refused" / "last.pt").exists()
    return " ".join(result.output.split())


def test_bad_named_tables_are_refused_with_file_line_and_column(cli, tmp_path: Path) -> None:
    write(tmp_path / "train.csv", flowers(60, seed=0))
    write(tmp_path / "test.csv", flowers(20, seed=2))
    write(tmp_path / "val.csv", flowers(20, seed=1), HEADER.replace("petal_width", "petal_widht"))
    message = refused(cli, tmp_path)
    assert "data.validation_path" in message and "'val.csv' has no column 'petal_width'" in message
    assert "did you mean 'petal_widht'" in message.lower()

    rows = flowers(20, seed=1)
    rows[6][3] = "wide"  # line 8: a word in a numeric column
    write(tmp_path / "val.csv", rows)
    message = refused(cli, tmp_path)
    assert "'val.csv' line 8, column 'petal_width': 'wide' is not a number" in message

    write(tmp_path / "val.csv", flowers(20, seed=1))
    rows = flowers(20, seed=2)
    for row in rows:
        row[4] = str(SPECIES.index(row[4]))
    write(tmp_path / "test.csv", rows)
    message = refused(cli, tmp_path)
    assert "data.test_path: the target column 'species' of 'test.csv' holds numbers" in message

    message = refused(cli, tmp_path, inputs={"plant": ["petal_length", "soil"], "place": ["zone", "petal_lenght"]})
    assert "data.inputs.place: 'train.csv' has no column 'petal_lenght'" in message

    message = refused(cli, tmp_path, target={"species": "species", "height": "soil"})
    assert "data.target.height: the column 'soil' is also an input column (inputs.plant)" in message

    write(tmp_path / "test.csv", flowers(20, seed=2))
    message = refused(cli, tmp_path, target={"species": "species", "height": "species"})
    assert "output 'height': the targets are class names" in message and "regression" in message

    message = refused(cli, tmp_path, test_path="nowhere.csv")
    assert "data.test_path: no file at 'nowhere.csv'" in message


def test_plain_csv_reads_a_test_file(cli, tmp_path: Path) -> None:
    write(tmp_path / "train.csv", flowers(120, seed=0))
    write(tmp_path / "test.csv", flowers(30, seed=2))
    plain = {
        "seed": 0,
        "data": {"source": "csv", "path": "train.csv", "target": "species", "test_path": "test.csv"},
        "model": {"layers": [{"type": "Dense", "units": 3, "activation": "softmax"}]},
        "compile": {"optimizer": "adam", "loss": "categorical_crossentropy", "metrics": ["accuracy"]},
        "fit": {"epochs": 1, "batch_size": 32, "device": "cpu"},
    }
    assert cli("fit", write_config(tmp_path, plain), "--run-dir", "run").exit_code == 0
    report = json.loads(cli("evaluate", "run", "--json").stdout)
    assert report["samples"] == 30 and list(report["per_class"]) == SPECIES
