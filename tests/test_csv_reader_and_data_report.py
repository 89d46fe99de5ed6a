"""The pyarrow CSV reader agrees with Python's (values and error messages); `check` reports the data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_digits_config, write_config
from data_files import write_table

from dltrain.data import DataBundle, Preprocessing, Split
from dltrain.data.report import data_report
from dltrain.data.tabular import read_table_arrow, read_table_python
from dltrain.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.csv_read import without_pyarrow

BROKEN = {
    "missing cell": ("a,b,y\n1,2,x\n3,,y\n", "line 3, column 'b': missing value"),
    "word among numbers": ("a,b,y\n1,2,x\n3,wide,y\n", "line 3, column 'b': 'wide' is not a number"),
    "ragged row": ("a,b,y\n1,2,x\n3,4\n", "line 3: 2 cells, but line 1 has 3"),
    "bad bytes": (b"a,b,y\n1,2,x\n3,4,\xff\xfe\n", "is not a readable CSV file"),
    "missing target": ("a,b,y\n1,2,x\n3,4,NA\n", "line 3, column 'y': missing target"),
    "a blank line counts": ("a,b,y\n1,2,x\n\n3,?,y\n", "line 4, column 'b': missing value"),
}


def csv_config(path: str = "t.csv", **data) -> dict:
    config = tiny_digits_config()
    config["data"] = {"source": "csv", "path": path, "target": "y", **data}
    config["model"]["layers"][-1]["units"] = 2
    return config


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_csv_gets_the_same_message_with_and_without_pyarrow(cli, tmp_path: Path, case: str) -> None:
    text, expected = BROKEN[case]
    (tmp_path / "t.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
    config = write_config(tmp_path, csv_config())
    outputs = []
    for hide in (False, True):
        with without_pyarrow(hide):
            result = cli("check", config)
        assert result.exit_code == 2, result.output
        outputs.append(result.output)
    assert expected in outputs[0] and outputs[0] == outputs[1]


def test_both_readers_read_the_same_table(tmp_path: Path) -> None:
    path = write_table(tmp_path / "flowers.csv", count=50)
    text = path.read_text().replace("petal_length", " petal_length ", 1)  # headers and cells are stripped
    path.write_text(text.replace(",clay,", ", clay ,"))
    fast, slow = read_table_arrow(path, {"soil"}), read_table_python(path, {"soil"})
    assert fast.header == slow.header == ["petal_length", "petal_width", "soil", "species", "height"]
    for name in fast.header:
        if name in ("soil", "species"):
            assert fast.texts(name, "x").strings().tolist() == slow.texts(name, "x").strings().tolist()
        else:
            assert np.array_equal(fast.numbers(name, "x"), slow.numbers(name, "x"))
    (tmp_path / "zip.csv").write_text("zip,flag,y\n007,true,a\n1,false,b\n")  # kept as written: not 7, not True
    assert read_table_arrow(tmp_path / "zip.csv", {"zip"}).texts("zip", "x").strings().tolist() == ["007", "1"]
    assert read_table_arrow(tmp_path / "zip.csv").texts("flag", "x").strings().tolist() == ["true", "false"]
    with pytest.raises(DataError, match="needs a header row"):
        (tmp_path / "empty.csv").write_text("a,b\n")
        read_table_arrow(tmp_path / "empty.csv")


def test_check_reports_rows_class_balance_and_ranges_per_split(cli, tmp_path: Path) -> None:
    write_table(tmp_path / "t.csv", count=100)
    config = csv_config(target="species", features=["petal_length", "soil"], normalize="standardize")
    config["model"]["layers"][-1]["units"] = 3
    path = write_config(tmp_path, config)
    data = json.loads(cli("check", path, "--json").stdout)["data"]
    rows = {s["split"]: s["rows"] for s in data["splits"]}
    assert rows == {"train": 64, "val": 16, "test": 20}
    train = data["splits"][0]
    assert sum(train["targets"].values()) == 64 and set(train["targets"]) == {"setosa", "versicolor", "virginica"}
    assert train["missing"] == 0
    names = [f["name"] for f in train["features"]]
    assert names == ["petal_length", "soil=clay", "soil=loam", "soil=sand"]
    lengths = np.loadtxt(tmp_path / "t.csv", delimiter=",", skiprows=1, usecols=0)
    low, high = train["features"][0]["min"], train["features"][0]["max"]
    assert lengths.min() - 1e-4 <= low < high <= lengths.max() + 1e-4  # in the file's units, not standardized
    human = cli("check", path).output
    assert "Data  (classification, input [4])" in human and "soil=clay" in human and "setosa" in human


def test_the_report_describes_token_ids_by_length_and_regression_targets_by_range() -> None:
    tokens = torch.tensor([[5, 6, 7, 0], [5, 0, 0, 0], [5, 6, 0, 0]])  # 0 pads
    split = Split(tokens, torch.tensor([[1.5], [2.5], [-1.0]]))
    bundle = DataBundle(split, None, None, "regression", (4,), None, None, Preprocessing())
    report = data_report(bundle).splits[0]
    assert report.lengths == {"p5": 1.1, "p50": 2.0, "p95": 2.9, "max": 3.0}
    assert report.features == [] and report.missing == 0
    assert report.target_range is not None and (report.target_range.min, report.target_range.max) == (-1.0, 2.5)
