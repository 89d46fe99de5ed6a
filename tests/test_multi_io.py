"""Several named inputs and outputs: Keras's parameter counts and columns, named arrays, resume, DDP, presets."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import CONFIGS, write_config
from sklearn.datasets import load_digits

from dltrain import api
from dltrain.build import prepare
from dltrain.config import load_config
from dltrain.data.named import _digit_features


def two_by_two(**fit: Any) -> dict[str, Any]:
    """An image and four derived numbers in; the digit and whether it is even out."""
    return {
        "name": "multi",
        "seed": 0,
        "data": {
            "source": "digits",
            "normalize": "scale",
            "inputs": {"image": "image", "extra": "features"},
            "targets": {"digit": "digit", "even": "even"},
        },
        "model": {
            "inputs": {"image": [1, 8, 8], "extra": [4]},
            "layers": [
                {
                    "type": "Conv2D",
                    "filters": 8,
                    "kernel_size": 3,
                    "padding": "same",
                    "activation": "relu",
                    "inputs": "image",
                },
                {"type": "MaxPooling2D", "pool_size": 2},
                {"type": "Flatten"},
                {"name": "joined", "type": "Concatenate", "inputs": [-1, "extra"]},
                {"type": "Dense", "units": 16, "activation": "relu"},
                {"name": "digit", "type": "Dense", "units": 10, "activation": "softmax"},
                {"name": "even", "type": "Dense", "units": 1, "activation": "sigmoid", "inputs": "joined"},
            ],
            "outputs": ["digit", "even"],
        },
        "compile": {
            "optimizer": {"type": "adam", "lr": 0.01},
            "loss": {"digit": "categorical_crossentropy", "even": "binary_crossentropy"},
            "loss_weights": {"digit": 1.0, "even": 0.5},
            "metrics": {"digit": ["accuracy"], "even": ["accuracy"]},
        },
        "fit": {"epochs": 2, "batch_size": 64, "validation_split": 0.2, "device": "cpu", **fit},
    }


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_parameter_counts_equal_kerass_functional_api(tmp_path: Path) -> None:
    """The same model in keras.Model(inputs=[image, extra], outputs=[digit, even]) has these counts."""
    _, built = prepare(load_config(write_config(tmp_path, two_by_two())))
    counts = [row.params for row in built.summary]
    assert counts == [
        3 * 3 * 1 * 8 + 8,  # Conv2D: kernel 3x3, 1 channel in, 8 filters, + 8 biases = 80
        0,  # MaxPooling2D: [8, 8, 8] -> [8, 4, 4]
        0,  # Flatten: 128
        0,  # Concatenate(Flatten, extra): 128 + 4 = 132
        132 * 16 + 16,  # Dense(16) on 132: 2,128
        16 * 10 + 10,  # digit: Dense(10) on 16: 170
        132 * 1 + 1,  # even: Dense(1) on the 132 joined values: 133
    ]
    assert built.total_params == 2511
    assert [row.inputs for row in built.summary][3] == ("flatten_2", "extra")


def test_two_outputs_have_kerass_columns_a_weighted_loss_and_a_confusion_matrix_each(cli, tmp_path: Path) -> None:
    config = two_by_two()
    config["fit"]["callbacks"] = [{"type": "EarlyStopping", "monitor": "val_even_accuracy", "patience": 5}]
    result = cli("fit", write_config(tmp_path, config), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    history = rows(tmp_path / "run")
    per_split = ["loss", "digit_loss", "digit_accuracy", "even_loss", "even_accuracy"]
    assert list(history[0]) == ["epoch", *per_split, *(f"val_{k}" for k in per_split), "lr", "seconds"]
    for row in history:
        total = float(row["digit_loss"]) + 0.5 * float(row["even_loss"])
        assert float(row["loss"]) == pytest.approx(total, rel=1e-5)
    assert float(history[-1]["val_digit_accuracy"]) > 0.8 and float(history[-1]["val_even_accuracy"]) > 0.7

    report = json.loads(cli("evaluate", tmp_path / "run", "--json").stdout)
    assert report["samples"] == 359 and report["loss"] == pytest.approx(
        report["digit_loss"] + 0.5 * report["even_loss"], rel=1e-5
    )
    digit, even = report["confusion_matrices"]["digit"], report["confusion_matrices"]["even"]
    assert len(digit) == 10 and len(even) == 2 and sum(map(sum, digit)) == sum(map(sum, even)) == 359
    assert list(report["per_class"]["even"]) == ["odd", "even"]

    typo = two_by_two()
    typo["fit"]["callbacks"] = [{"type": "EarlyStopping", "monitor": "val_even_acc"}]
    refused = cli("check", write_config(tmp_path, typo, "typo.yaml"))
    assert refused.exit_code == 2 and "val_even_accuracy" in refused.output


def test_losses_by_output_must_name_outputs(cli, tmp_path: Path) -> None:
    config = two_by_two()
    config["compile"]["loss"] = {"digit": "categorical_crossentropy", "evn": "binary_crossentropy"}
    result = cli("check", write_config(tmp_path, config))
    assert result.exit_code == 2 and "config.yaml:" in result.output
    assert "'evn', which is no model output" in result.output and "even" in result.output
    config["compile"]["loss"] = "categorical_crossentropy"
    result = cli("check", write_config(tmp_path, config))
    assert result.exit_code == 2 and "give loss per output" in result.output


def test_named_npz_arrays_train_and_a_missing_one_is_named(cli, tmp_path: Path) -> None:
    digits = load_digits()
    x, y = digits.data[:400].astype(np.float32), digits.target[:400]
    arrays = {
        "x_train_image": x.reshape(-1, 1, 8, 8),
        "x_train_extra": x.reshape(-1, 8, 8)[:, :4].mean(axis=2),
        "y_train_digit": y,
        "y_train_even": (y % 2 == 0).astype(np.float32),
    }
    np.savez(tmp_path / "named.npz", **arrays)
    config = two_by_two(epochs=1)
    config["data"] = {"source": "npz", "path": str(tmp_path / "named.npz"), "normalize": "scale"}
    result = cli("fit", write_config(tmp_path, config), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "val_even_accuracy" in rows(tmp_path / "run")[0]

    np.savez(tmp_path / "named.npz", **{k: v for k, v in arrays.items() if k != "y_train_even"})
    result = cli("fit", write_config(tmp_path, config), "--run-dir", tmp_path / "again")
    assert result.exit_code == 2 and "'y_train_even'" in result.output and "y_train_<output>" in result.output


def test_a_multi_output_graph_resumes_exactly(cli, tmp_path: Path) -> None:
    assert cli("fit", write_config(tmp_path, two_by_two(epochs=3), "three.yaml"), "--run-dir", "whole").exit_code == 0
    assert cli("fit", write_config(tmp_path, two_by_two(epochs=1), "one.yaml"), "--run-dir", "part").exit_code == 0
    resumed = cli("fit", "--resume", "part", "--set", "fit.epochs=3")
    assert resumed.exit_code == 0, resumed.output
    whole, part = (torch.load(f"{name}/last.pt", weights_only=True) for name in ("whole", "part"))
    assert all(torch.equal(whole["model"][key], part["model"][key]) for key in whole["model"])
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(whole["history"]) == strip(part["history"])


def test_two_processes_train_a_multi_output_graph_as_one(cli, tmp_path: Path) -> None:
    data, _ = prepare(load_config(write_config(tmp_path, two_by_two())))
    assert len(data.train) % 2 == 0  # no rank pads its shard, so the two runs are the same arithmetic
    assert cli("fit", write_config(tmp_path, two_by_two(batch_size=64), "one.yaml"), "--run-dir", "one").exit_code == 0
    double = write_config(tmp_path, two_by_two(batch_size=32), "two.yaml")
    ddp = cli.subprocess(
        "fit",
        double,
        "--devices",
        "2",
        "--device",
        "cpu",
        "--run-dir",
        tmp_path / "two",
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert ddp.returncode == 0, ddp.stderr
    for one, two in zip(rows(tmp_path / "one"), rows(tmp_path / "two"), strict=True):
        for key in ("loss", "digit_accuracy", "even_loss", "val_loss", "val_even_accuracy"):
            assert float(two[key]) == pytest.approx(float(one[key]), rel=1e-4, abs=1e-4), key


# The accuracies the presets state in their comments (test split, after their 10 epochs).
PRESET_FLOORS = {
    "digits_two_inputs": {"accuracy": 0.95},
    "digits_two_outputs": {"digit_accuracy": 0.95, "even_accuracy": 0.9},
}


@pytest.mark.parametrize("preset", sorted(PRESET_FLOORS))
def test_presets_train_to_their_stated_accuracy(preset: str, tmp_path: Path) -> None:
    results = api.fit(CONFIGS / f"{preset}.yaml", ["fit.device=cpu"], run_dir=str(tmp_path / "run")).results
    for column, floor in PRESET_FLOORS[preset].items():
        assert results["test"][column] >= floor, (column, results["test"])


def test_predict_gives_one_group_per_output(cli, tmp_path: Path) -> None:
    assert cli("fit", write_config(tmp_path, two_by_two(epochs=3)), "--run-dir", tmp_path / "run").exit_code == 0
    digits = load_digits()
    x = digits.data[:20].astype(np.float32)
    features = _digit_features(x)  # the four numbers the `features` view gives
    np.savez(tmp_path / "new.npz", image=x.reshape(-1, 1, 8, 8), x_extra=features)
    result = cli("predict", tmp_path / "run", tmp_path / "new.npz", "--json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)["predictions"]
    assert [p["input"] for p in predictions] == list(range(20))
    assert set(predictions[0]["outputs"]) == {"digit", "even"} and "top_k" in predictions[0]["outputs"]["digit"]
    correct = sum(p["prediction"]["digit"] == str(t) for p, t in zip(predictions, digits.target[:20]))
    parity = sum(
        p["prediction"]["even"] == ("even" if t % 2 == 0 else "odd") for p, t in zip(predictions, digits.target[:20])
    )
    assert correct >= 15 and parity >= 14

    np.savez(tmp_path / "half.npz", image=x.reshape(-1, 1, 8, 8))
    missing = cli("predict", tmp_path / "run", tmp_path / "half.npz")
    assert missing.exit_code == 2 and "no array for input 'extra'" in missing.output


def test_onnx_export_has_the_configs_input_and_output_names_and_matches(cli, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime

    assert cli("fit", write_config(tmp_path, two_by_two(epochs=1)), "--run-dir", tmp_path / "run").exit_code == 0
    result = cli("export", tmp_path / "run", "--format", "onnx", "-o", tmp_path / "model.onnx")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "model.onnx.json").read_text())
    assert [i["name"] for i in meta["inputs"]] == ["image", "extra"] and meta["check"]["max_abs_diff"] < 1e-4
    assert [(o["name"], o["kind"]) for o in meta["outputs"]] == [("digit", "probabilities"), ("even", "probability")]
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "extra"]
    assert [o.name for o in session.get_outputs()] == ["digit", "even"]
    digit, even = session.run(
        None, {"image": np.zeros((3, 1, 8, 8), np.float32), "extra": np.zeros((3, 4), np.float32)}
    )
    assert digit.shape == (3, 10) and np.allclose(digit.sum(axis=1), 1, atol=1e-5) and even.shape == (3, 1)


def test_csv_columns_by_input_and_targets_by_output(cli, tmp_path: Path) -> None:
    from data_files import write_table

    write_table(tmp_path / "flowers.csv")
    config = {
        "name": "table",
        "seed": 0,
        "data": {
            "source": "csv",
            "path": "flowers.csv",
            "inputs": {"length": ["petal_length"], "width": ["petal_width"]},
            "target": {"species": "species", "height": "height"},
            "normalize": "standardize",
        },
        "model": {
            "inputs": {"length": [1], "width": [1]},
            "layers": [
                {"name": "joined", "type": "Concatenate", "inputs": ["length", "width"]},
                {"type": "Dense", "units": 16, "activation": "relu"},
                {"name": "species", "type": "Dense", "units": 3, "activation": "softmax"},
                {"name": "height", "type": "Dense", "units": 1, "inputs": "joined"},
            ],
            "outputs": ["species", "height"],
        },
        "compile": {
            "optimizer": {"type": "adam", "lr": 0.05},
            "loss": {"species": "categorical_crossentropy", "height": "mse"},
            "loss_weights": {"height": 0.01},
            "metrics": {"species": ["accuracy"], "height": ["mae"]},
        },
        "fit": {"epochs": 15, "batch_size": 32, "validation_split": 0.2, "device": "cpu"},
    }
    result = cli("fit", write_config(tmp_path, config), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    last = rows(tmp_path / "run")[-1]
    assert float(last["val_species_accuracy"]) >= 0.8 and "val_height_mae" in last
    report = json.loads(cli("evaluate", tmp_path / "run", "--json").stdout)
    assert list(report["per_class"]["species"]) == ["setosa", "versicolor", "virginica"]
    assert "height" not in report["confusion_matrices"]  # a regression output has none
