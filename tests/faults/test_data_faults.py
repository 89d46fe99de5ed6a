"""Fault injection, data family: arrays and files that used to train silently wrong or reach a
traceback (channels-last images, complex/text/NaN cells, half-given validation sets,
headerless or short CSV rows at predict time) end in one message and exit 2.

Self-contained apart from tests/conftest (its `cli` fixture and `assert_refused`), so it runs
beside any other fault file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import assert_refused


def write(tmp_path: Path, config: dict[str, Any], name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def npz_config(
    path: str = "d.npz", layers: list | None = None, loss: str = "categorical_crossentropy", **data: Any
) -> dict[str, Any]:
    return {
        "name": "faults",
        "seed": 0,
        "data": {"source": "npz", "path": path, **data},
        "model": {"layers": layers or [{"type": "Flatten"}, {"type": "Dense", "units": 2, "activation": "softmax"}]},
        "compile": {"loss": loss},
        "fit": {"epochs": 1, "device": "cpu"},
    }


def save(tmp_path: Path, **arrays: Any) -> None:
    np.savez(tmp_path / "d.npz", **arrays)


CONV = [
    {"type": "Conv2D", "filters": 4, "kernel_size": 3},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Flatten"},
    {"type": "Dense", "units": 2, "activation": "softmax"},
]


def test_channels_last_images_are_refused_by_check_and_fit_with_the_fix(cli, tmp_path: Path) -> None:
    save(tmp_path, x_train=np.zeros((20, 16, 16, 3), np.uint8), y_train=np.arange(20) % 2)
    config = write(tmp_path, npz_config(layers=CONV))
    for command in ("check", "fit"):
        assert_refused(cli(command, config), "[16, 16, 3]", "channels-last", "data.channels_last: true", "[3, 16, 16]")
    result = cli.subprocess("fit", config, cwd=tmp_path)  # the same as a real process
    assert_refused(result, "data.channels_last: true")
    assert not (tmp_path / "runs").exists()


def test_channels_last_synthetic_shape_is_refused(cli, tmp_path: Path) -> None:
    config = npz_config(layers=CONV)
    config["data"] = {"source": "synthetic", "num_samples": 20, "shape": [16, 16, 3], "num_classes": 2}
    assert_refused(cli("check", write(tmp_path, config)), "channels-last", "data.channels_last")


def test_channels_last_on_data_that_is_not_images_is_refused(cli, tmp_path: Path) -> None:
    save(tmp_path, x_train=np.zeros((20, 10), np.float32), y_train=np.arange(20) % 2)
    assert_refused(cli("check", write(tmp_path, npz_config(channels_last=True))), "data.channels_last", "[10]")


BAD_ARRAYS = {
    "complex inputs": (
        lambda: {"x_train": np.ones((20, 4), np.complex64) * 1j, "y_train": np.arange(20) % 2},
        ["complex numbers", "real numbers"],
    ),
    "text inputs": (lambda: {"x_train": np.array([["a"] * 4] * 20), "y_train": np.arange(20) % 2}, ["text"]),
    "missing inputs": (
        lambda: {"x_train": np.where(np.eye(20, 4) > 0, np.nan, 1.0), "y_train": np.arange(20) % 2},
        ["missing or infinite", "index (0, 0)"],
    ),
    "infinite test inputs": (
        lambda: {
            "x_train": np.ones((20, 4)),
            "y_train": np.arange(20) % 2,
            "x_test": np.full((5, 4), np.inf),
            "y_test": np.arange(5) % 2,
        },
        ["test split", "infinite"],
    ),
    "object arrays": (
        lambda: {"x_train": np.array([{"a": 1}] * 20, dtype=object), "y_train": np.arange(20) % 2},
        ["'x_train' cannot be read", "numeric arrays"],
    ),
    "validation inputs without targets": (
        lambda: {"x_train": np.ones((20, 4)), "y_train": np.arange(20) % 2, "x_val": np.ones((5, 4))},
        ["'x_val' but no 'y_val'"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_arrays_that_are_not_finite_real_numbers_are_refused(cli, tmp_path: Path, case: str) -> None:
    make, words = BAD_ARRAYS[case]
    save(tmp_path, **make())
    assert_refused(cli("fit", write(tmp_path, npz_config())), *words)
    assert not (tmp_path / "runs").exists()


def test_regression_targets_with_nan_are_refused(cli, tmp_path: Path) -> None:
    y = np.ones(20)
    y[7] = np.nan
    save(tmp_path, x_train=np.ones((20, 4)), y_train=y)
    config = npz_config(layers=[{"type": "Dense", "units": 1}], loss="mse")
    assert_refused(cli("fit", write(tmp_path, config)), "targets", "index (7,)")


def table(path: Path, rows: int = 30, label: str = "kind") -> Path:
    lines = [f"a,b,{label}"] + [f"{i % 7},{i % 3},{['x', 'y', 'z'][i % 3]}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_config(**data: Any) -> dict[str, Any]:
    return {
        "name": "faults",
        "seed": 0,
        "data": {"source": "csv", "path": "t.csv", "target": "kind", **data},
        "model": {"layers": [{"type": "Dense", "units": 3, "activation": "softmax"}]},
        "compile": {"loss": "categorical_crossentropy"},
        "fit": {"epochs": 1, "device": "cpu"},
    }


def test_a_missing_or_different_validation_csv_is_refused(cli, tmp_path: Path) -> None:
    table(tmp_path / "t.csv")
    assert_refused(
        cli("check", write(tmp_path, csv_config(validation_path="nowhere.csv"))), "data.validation_path", "nowhere.csv"
    )
    table(tmp_path / "v.csv", label="species")
    assert_refused(cli("check", write(tmp_path, csv_config(validation_path="v.csv"))), "'kind'", "v.csv")


@pytest.mark.parametrize(
    "data, words",
    [
        ({"validation_path": "t.csv"}, ["data.validation_path and data.path", "validation numbers"]),
        ({"test_path": "./t.csv"}, ["data.test_path and data.path", "test numbers"]),
        ({"validation_path": "v.csv", "test_path": "v.csv"}, ["data.test_path and data.validation_path"]),
        ({"validation_path": "v.csv", "test_path": "link.csv"}, ["data.test_path and data.validation_path"]),
    ],
)
def test_a_held_out_csv_that_is_the_training_file_or_the_other_one_is_refused(
    cli, tmp_path: Path, data: dict[str, Any], words: list[str]
) -> None:
    # Validation or test numbers measured on the rows trained on would look right and be wrong.
    table(tmp_path / "t.csv")
    table(tmp_path / "v.csv")
    (tmp_path / "link.csv").symlink_to(tmp_path / "v.csv")  # another name for the same file
    for command in ("check", "fit"):
        assert_refused(cli(command, write(tmp_path, csv_config(**data))), *words)
    assert not (tmp_path / "runs").exists()


def test_held_out_npy_files_that_are_the_training_ones_are_refused(cli, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((20, 4), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.arange(20) % 2)
    config = npz_config(loss="sparse_categorical_crossentropy")
    config["data"] = {"source": "npy", "x": "x.npy", "y": "y.npy", "x_val": "x.npy", "y_val": "y.npy"}
    assert_refused(cli("fit", write(tmp_path, config)), "data.x_val and data.x", "validation numbers")
    config["data"]["streaming"] = True
    assert_refused(cli("fit", write(tmp_path, config)), "data.x_val and data.x")


def test_binary_crossentropy_on_three_class_names_is_refused(cli, tmp_path: Path) -> None:
    table(tmp_path / "t.csv")
    config = csv_config()
    config["model"]["layers"][0] = {"type": "Dense", "units": 1, "activation": "sigmoid"}
    config["compile"]["loss"] = "binary_crossentropy"
    assert_refused(cli("check", write(tmp_path, config)), "two classes", "3", "categorical_crossentropy")


def test_predict_refuses_csv_rows_that_do_not_fit_the_model(cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    save(tmp_path, x_train=rng.normal(size=(40, 4)), y_train=np.arange(40) % 2)
    config = npz_config(layers=[{"type": "Dense", "units": 2, "activation": "softmax"}])
    assert cli("fit", write(tmp_path, config), "--run-dir", "run").exit_code == 0
    (tmp_path / "three.csv").write_text("1,2,3\n4,5,6\n")  # headerless, 3 columns for a model of 4
    assert_refused(cli("predict", "run", "three.csv"), "three.csv", "[2, 3]", "[4]")
    (tmp_path / "word.csv").write_text("a,b,c,d\n1,2,x,4\n")
    assert_refused(cli("predict", "run", "word.csv"), "line 2, column 3 ('c')", "'x' is not a number")
    (tmp_path / "short.csv").write_text("1,2,3,4\n5,6\n")
    assert_refused(cli("predict", "run", "short.csv"), "line 2: 2 cells")


BAD_CELLS = {  # (the cell at line 3, column 'a'; words of the message)
    "missing feature": ("", ["line 3, column 'a'", "missing value"]),
    "NA feature": ("NA", ["line 3, column 'a'", "missing value"]),
    "complex number": ("1+2j", ["line 3, column 'a'", "'1+2j' is not a number"]),
}


@pytest.mark.parametrize("case", list(BAD_CELLS))
def test_csv_cells_that_are_not_numbers_name_their_line(cli, tmp_path: Path, case: str) -> None:
    cell, words = BAD_CELLS[case]
    lines = table(tmp_path / "t.csv").read_text().splitlines()
    lines[2] = cell + lines[2][lines[2].index(",") :]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    for command in ("check", "fit"):
        assert_refused(cli(command, write(tmp_path, csv_config())), "t.csv", *words)
    assert not (tmp_path / "runs").exists()


def test_a_time_series_with_a_missing_cell_is_refused(cli, tmp_path: Path) -> None:
    rows = ["t,load"] + [f"{i},{'' if i == 5 else i % 4}" for i in range(40)]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    config = {
        "name": "faults",
        "seed": 0,
        "data": {"source": "timeseries_csv", "path": "s.csv", "target": "load", "columns": ["load"], "window": 4},
        "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 1}]},
        "compile": {"loss": "mse"},
        "fit": {"epochs": 1, "device": "cpu"},
    }
    assert_refused(cli("check", write(tmp_path, config)), "s.csv", "line 7", "missing value")


def test_binary_crossentropy_on_class_indices_is_refused(cli, tmp_path: Path) -> None:
    save(tmp_path, x_train=np.ones((30, 4)), y_train=np.arange(30) % 3)
    config = npz_config(layers=[{"type": "Dense", "units": 1, "activation": "sigmoid"}], loss="binary_crossentropy")
    assert_refused(cli("check", write(tmp_path, config)), "between 0 and 1", "from 0 to 2", "categorical_crossentropy")
