"""Numeric Parquet columns in memory: read straight into one float32 array (the same tensors as the table path
gives), missing cells named, and a peak memory a small multiple of the data rather than ~10x."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import REPO

from dltrain.data import load_data
from dltrain.errors import DataError
from dltrain.schema.data import ParquetParams


def write_numbers(path: Path, rows: int, columns: int, group: int = 4096) -> np.ndarray:
    """Seeded float32 features `f0..` and an integer label in row groups of `group` rows; returns the features."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((rows, columns)) * np.arange(1, columns + 1)).astype(np.float32)
    table = pa.table({**{f"f{i}": x[:, i] for i in range(columns)}, "label": (x[:, 0] > 0).astype(np.int64)})
    pq.write_table(table, path, row_group_size=group)
    return x


def params(path: Path, **keys: object) -> ParquetParams:
    return ParquetParams(source="parquet", path=str(path), target="label", streaming=False, **keys)


def test_numeric_columns_load_as_the_table_path_loads_them(tmp_path: Path) -> None:
    write_numbers(tmp_path / "n.parquet", 3000, 6, group=700)
    fast = load_data(params(tmp_path / "n.parquet", normalize="standardize"), "classification", 0.2)
    # categorical: [] is the fast path; naming a column takes the table path (f5 one-hot would change the width)
    table = pa.Table.from_batches(pq.read_table(tmp_path / "n.parquet").to_batches())
    pq.write_table(table.append_column("word", pa.array(["a"] * 3000)), tmp_path / "t.parquet")
    slow = load_data(params(tmp_path / "t.parquet", normalize="standardize", features=[f"f{i}" for i in range(6)] + ["word"]),
                     "classification", 0.2)  # fmt: skip
    assert slow.input_shape == (7,) and fast.input_shape == (6,)
    for split in ("train", "val", "test"):
        assert torch.allclose(fast.split(split).x, slow.split(split).x[:, :6], atol=1e-5)
        assert torch.equal(fast.split(split).y, slow.split(split).y)
    assert torch.allclose(fast.preprocessing.mean, slow.preprocessing.mean[..., :6], rtol=1e-6)
    assert fast.preprocessing.table == {"features": [f"f{i}" for i in range(6)], "categories": {}}


@pytest.mark.parametrize("cell", ["null", "nan"])
def test_a_missing_cell_is_named_by_file_row_and_column(tmp_path: Path, cell: str) -> None:
    x = write_numbers(tmp_path / "n.parquet", 50, 3, group=20)
    column = pa.array(x[:, 2].tolist(), pa.float32())
    values = column.to_pylist()
    values[33] = None if cell == "null" else float("nan")
    table = pq.read_table(tmp_path / "n.parquet").set_column(2, "f2", pa.array(values, pa.float32()))
    pq.write_table(table, tmp_path / "n.parquet", row_group_size=20)
    with pytest.raises(DataError, match=r"n.parquet' row 34, column 'f2': missing value"):
        load_data(params(tmp_path / "n.parquet"), "classification", 0.2)


PEAK = """
import json, sys
from dltrain.data import load_data
from dltrain.schema.data import ParquetParams
def peak():  # this process's peak resident memory (ru_maxrss would start from the forking pytest's)
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
def run(path): return load_data(ParquetParams(source="parquet", path=path, target="label", streaming=False,
                                              normalize="standardize"), "classification", 0.2)
run(sys.argv[1])  # imports, allocators warmed on a small file
before = peak()
data = run(sys.argv[2])
print(json.dumps({"grown": peak() - before, "train": data.train.x.numel() * 4}))
"""


def test_peak_memory_is_a_small_multiple_of_the_data(tmp_path: Path) -> None:
    write_numbers(tmp_path / "small.parquet", 500, 256)
    x = write_numbers(tmp_path / "big.parquet", 160_000, 256, group=32_768)  # 164 MB of float32
    done = subprocess.run(
        [sys.executable, "-c", PEAK, tmp_path / "small.parquet", tmp_path / "big.parquet"],
        capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    grown = json.loads(done.stdout)["grown"]
    assert grown < 3 * x.nbytes, f"peak grew by {grown / x.nbytes:.1f}x the data"  # the table path: ~9x
