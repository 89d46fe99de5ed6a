"""`csv`: tabular data, one row per sample; and the CSV reading `timeseries_csv` and `predict` share.

Numeric columns are used as they are; a column of words (or one listed under
`categorical`) is one-hot encoded with the categories of the training split only,
and that encoding is stored in the checkpoint so `predict` encodes new rows the same
way. A missing or malformed cell is reported with its line and column.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._registry import did_you_mean
from ..errors import DataError
from ..inference import encode_table as encode
from ..schema.data import CsvParams
from .base import RawData, register_source

MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}


@dataclass
class Table:
    """A CSV file's header and rows, as strings."""

    path: Path
    header: list[str]
    rows: list[list[str]]

    def __len__(self) -> int:
        return len(self.rows)

    def index(self, name: str, key: str) -> int:
        """The position of column `name`; a clear error (from data.`key`) when it is absent."""
        if name not in self.header:
            hint = did_you_mean(name, self.header)
            raise DataError(
                f"data.{key}: '{self.path}' has no column '{name}'.{hint} Columns: {', '.join(self.header)}"
            )
        return self.header.index(name)

    def cells(self, name: str, key: str) -> list[str]:
        column = self.index(name, key)
        return [row[column].strip() for row in self.rows]

    def numbers(self, name: str, key: str) -> np.ndarray:
        """Column `name` as float64; a missing or non-numeric cell is an error naming its line."""
        cells = self.cells(name, key)
        values = [_number(cell) for cell in cells]
        for row, (cell, value) in enumerate(zip(cells, values)):
            if value is None:
                raise DataError(f"{self.where(row, name)}: {_describe(cell)}; numbers are needed here")
        return np.array(values, dtype=np.float64)

    def where(self, row: int, column: str) -> str:
        return f"'{self.path}' line {row + 2}, column '{column}'"


def _number(cell: str) -> float | None:
    if cell.lower() in MISSING:
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def _describe(cell: str) -> str:
    return "missing value" if cell.lower() in MISSING else f"'{cell}' is not a number"


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank row; rows of unequal length are errors with their line."""
    if not path.is_file():
        raise DataError(f"data.path: no file at '{path}'. Give the path of a CSV file with a header row.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [(number, row) for number, row in enumerate(csv.reader(handle), start=1)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"'{path}' is not a readable CSV file ({exc})") from None
    rows = [(number, row) for number, row in rows if any(cell.strip() for cell in row)]
    for number, row in rows[1:]:
        if len(row) != len(rows[0][1]):
            raise DataError(f"'{path}' line {number}: {len(row)} cells, but line {rows[0][0]} has {len(rows[0][1])}")
    return rows


def read_table(path: Path) -> Table:
    """Read a CSV file with a header row; ragged rows are errors with their line."""
    lines = [row for _, row in _read_rows(path)]
    if len(lines) < 2:
        raise DataError(f"'{path}' needs a header row and at least one data row")
    header = [name.strip() for name in lines[0]]
    return Table(path, header, lines[1:])


def numeric_rows(path: Path) -> np.ndarray:
    """(N, columns) float64 of a CSV of numbers, read by position: with a header row, or without one.

    A first row of numbers is data, not a header (a name is never a number), so a
    headerless file loses no row and no column is looked up by a name it does not have.
    """
    rows = _read_rows(path)
    if rows and all(_number(cell) is not None for cell in rows[0][1]):
        body = rows
    else:
        body = rows[1:]
    if not body:
        raise DataError(f"'{path}' has no data rows")
    header = rows[0][1] if body is not rows else [str(i + 1) for i in range(len(rows[0][1]))]
    values = np.empty((len(body), len(header)), dtype=np.float64)
    for i, (number, row) in enumerate(body):
        for j, cell in enumerate(row):
            value = _number(cell.strip())
            if value is None:
                raise DataError(
                    f"'{path}' line {number}, column {j + 1} ('{header[j].strip()}'): "
                    f"{_describe(cell.strip())}; numbers are needed here"
                )
            values[i, j] = value
    return values


def feature_cells(table: Table, features: list[str], categorical: set[str]) -> np.ndarray:
    """(N, F) object array: floats for numeric columns, strings for categorical ones (no missing cells)."""
    columns: list[list[Any]] = []
    for name in features:
        cells = table.cells(name, "features")
        for row, cell in enumerate(cells):
            if cell.lower() in MISSING:
                raise DataError(f"{table.where(row, name)}: missing value; fill it in or drop the row")
        columns.append(cells if name in categorical else list(table.numbers(name, "features")))
    return np.array(columns, dtype=object).T.reshape(len(table), len(features))


def infer_categorical(table: Table, features: list[str], declared: list[str]) -> set[str]:
    """Columns to one-hot: those declared, and those where no cell is a number."""
    categorical = set(declared)
    for name in features:
        if name in categorical:
            continue
        cells = [c for c in table.cells(name, "features") if c.lower() not in MISSING]
        if cells and all(_number(c) is None for c in cells):
            categorical.add(name)
    return categorical


class TableEncoder:
    """One-hot encodes the categorical columns with categories seen in the training split."""

    def __init__(self, features: list[str], categorical: set[str]) -> None:
        self.features = features
        self.categorical = categorical

    def fit(self, x_train: np.ndarray) -> dict[str, Any]:
        categories = {
            name: sorted({str(v) for v in x_train[:, i]})
            for i, name in enumerate(self.features)
            if name in self.categorical
        }
        return {"features": self.features, "categories": categories}

    def transform(self, x: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        return encode(x, state)


def read_features(path: Path, state: dict[str, Any]) -> np.ndarray:
    """New rows of a CSV encoded as training did (`state` from the checkpoint); for `predict`."""
    table = read_table(path)
    return encode(feature_cells(table, state["features"], set(state["categories"])), state)


def target_values(table: Table, name: str) -> np.ndarray:
    """The target column: floats when every cell is a number, else the strings (class names)."""
    cells = table.cells(name, "target")
    for row, cell in enumerate(cells):
        if cell.lower() in MISSING:
            raise DataError(f"{table.where(row, name)}: missing target; fill it in or drop the row")
    numbers = [_number(c) for c in cells]
    if all(n is not None for n in numbers):
        return np.array(numbers, dtype=np.float64)
    return np.array(cells, dtype=str)


@register_source(CsvParams)
def csv_source(p: CsvParams) -> RawData:
    """Tabular rows from a CSV file: `target` column, numeric and categorical `features`."""
    if not isinstance(p.target, str) or p.inputs is not None:
        raise DataError(
            "data.target by output and data.inputs by name are for a model with named inputs or several "
            "outputs (model.inputs, model.outputs); this model has one of each: give one target column"
        )
    table = read_table(p.path)
    table.index(p.target, "target")
    features = p.features or [name for name in table.header if name != p.target]
    if p.target in features:
        raise DataError(f"data.features: the target column '{p.target}' cannot also be a feature")
    for name in features + p.categorical:
        table.index(name, "features" if name in features else "categorical")
    categorical = infer_categorical(table, features, p.categorical)
    x = feature_cells(table, features, categorical)
    raw = RawData(x, target_values(table, p.target), encoder=TableEncoder(features, categorical))
    if p.validation_path is not None:
        raw.x_val, raw.y_val = _validation_rows(p.validation_path, features, categorical, p.target, raw.y_train)
    return raw


def _validation_rows(
    path: Path, features: list[str], categorical: set[str], target: str, y_train: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of `data.validation_path`, read with the training file's columns."""
    if not path.is_file():
        raise DataError(f"data.validation_path: no file at '{path}'. Give a CSV with the same columns as data.path.")
    table = read_table(path)
    table.index(target, "validation_path")
    for name in features:
        table.index(name, "validation_path")
    y = target_values(table, target)
    if (y.dtype.kind == "U") != (y_train.dtype.kind == "U"):
        kinds = {True: "class names", False: "numbers"}
        raise DataError(
            f"data.validation_path: the target column '{target}' of '{path}' holds "
            f"{kinds[y.dtype.kind == 'U']}, but in data.path it holds {kinds[y_train.dtype.kind == 'U']}"
        )
    return feature_cells(table, features, categorical), y
