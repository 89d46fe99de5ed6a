"""Fault injection, data larger than memory (`parquet`, `npy`, streamed or not): Parquet files whose
columns differ, held-out arrays of another sample shape, arrays with no rows or too few to train on,
and byte sizes that mean nothing, each one message and exit 2 before anything is trained.

Self-contained beside the other fault files (only conftest's `cli`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import assert_refused

ROWS, FEATURES, CLASSES = 120, 4, 3


def _config(folder: Path, data: dict[str, Any]) -> Path:
    config = {
        "seed": 0,
        "data": data,
        "model": {
            "layers": [
                {"type": "Dense", "units": 8, "activation": "relu"},
                {"type": "Dense", "units": CLASSES, "activation": "softmax"},
            ]
        },
        "compile": {"optimizer": "adam", "loss": "categorical_crossentropy"},
        "fit": {"epochs": 1, "batch_size": 32, "validation_split": 0.2, "device": "cpu"},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Two Parquet files (row groups of 30) and a pair of .npy files holding the same rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=(FEATURES, CLASSES))).argmax(axis=1)
    table = pa.table({**{f"f{i}": x[:, i] for i in range(FEATURES)}, "label": y})
    (tmp_path / "pq").mkdir()
    pq.write_table(table.slice(0, 60), tmp_path / "pq" / "part-0.parquet", row_group_size=30)
    pq.write_table(table.slice(60), tmp_path / "pq" / "part-1.parquet", row_group_size=30)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path


@pytest.mark.parametrize("streaming", [True, False])
def test_parquet_files_with_different_columns_are_refused_naming_both(cli, files: Path, streaming: bool) -> None:
    """Without data.features every column is an input: a column only one file has would be read as
    missing cells of the others (in memory) or silently left out (streamed)."""
    part = files / "pq" / "part-1.parquet"
    pq.write_table(pq.read_table(part).append_column("f9", pa.array(np.ones(60, np.float32))), part)
    data = {"source": "parquet", "path": "pq", "target": "label", "streaming": streaming}
    assert_refused(cli("fit", _config(files, data)), "part-1.parquet", "part-0.parquet", "'f9'", "data.features")
    data["features"] = ["f0", "f1", "f2", "f3"]  # named inputs: the extra column is not read, so it is fine
    assert cli("check", _config(files, data)).exit_code == 0


@pytest.mark.parametrize("streaming", [True, False])
def test_test_inputs_of_another_sample_shape_are_refused(cli, files: Path, streaming: bool) -> None:
    np.save(files / "xt.npy", np.ones((30, FEATURES + 1), np.float32))
    np.save(files / "yt.npy", np.zeros(30, np.int64))
    data = {"source": "npy", "x": "x.npy", "y": "y.npy", "x_test": "xt.npy", "y_test": "yt.npy", "streaming": streaming}
    assert_refused(cli("fit", _config(files, data)), "test split", "[5]", "[4]")
    assert not (files / "runs").exists()


@pytest.mark.parametrize("streaming", [True, False])
def test_arrays_without_rows_are_refused(cli, files: Path, streaming: bool) -> None:
    np.save(files / "x.npy", np.zeros((0, FEATURES), np.float32))
    np.save(files / "y.npy", np.zeros(0, np.int64))
    data = {"source": "npy", "x": "x.npy", "y": "y.npy", "streaming": streaming}
    assert_refused(cli("fit", _config(files, data)), "no samples")


def test_too_few_rows_to_leave_a_training_sample_are_refused(cli, files: Path) -> None:
    np.save(files / "x.npy", np.zeros((2, FEATURES), np.float32))
    np.save(files / "y.npy", np.array([0, 1]))
    data = {"source": "npy", "x": "x.npy", "y": "y.npy"}
    assert_refused(cli("fit", _config(files, data)), "no training sample is left", "2 in all", "test_split")


@pytest.mark.parametrize(("key", "value"), [("memory_limit", 0), ("memory_limit", "0B"), ("shuffle_buffer", 0)])
def test_byte_sizes_of_zero_are_refused_with_their_line(cli, files: Path, key: str, value: Any) -> None:
    data = {"source": "npy", "x": "x.npy", "y": "y.npy", "streaming": True, key: value}
    assert_refused(cli("check", _config(files, data)), "config.yaml:", f"data.{key}", "greater than 0")
