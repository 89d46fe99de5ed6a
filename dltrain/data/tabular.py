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
from typing import Any, Callable, Collection, TypeVar

import numpy as np

from .._registry import did_you_mean
from ..errors import DataError
from ..inference import encode_table as encode
from ..schema.data import ColumnsParams, CsvParams
from .base import RawData, register_source

T = TypeVar("T")

MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}

Locate = Callable[[int], str]


@dataclass
class Table:
    """A table's header and columns: float64 where every cell is a number, else the cells' texts.

    A text column's cells are stripped strings (None for a Parquet null); `locate` turns a
    row index into where that row is ("'f.csv' line 8"), for error messages.
    """

    path: Path | str
    header: list[str]
    columns: dict[str, np.ndarray]
    locate: Locate

    def __len__(self) -> int:
        return len(self.columns[self.header[0]]) if self.header else 0

    def index(self, name: str, key: str) -> int:
        """The position of column `name`; a clear error (from data.`key`) when it is absent."""
        if name not in self.header:
            hint = did_you_mean(name, self.header)
            raise DataError(
                f"data.{key}: '{self.path}' has no column '{name}'.{hint} Columns: {', '.join(self.header)}"
            )
        return self.header.index(name)

    def column(self, name: str, key: str) -> np.ndarray:
        self.index(name, key)
        return self.columns[name]

    def cells(self, name: str, key: str, what: str = "value") -> np.ndarray:
        """Column `name` as texts (numbers written as read), a missing cell refused with its row."""
        column = self.column(name, key)
        if column.dtype.kind != "O":
            self.numbers(name, key)  # refuses NaN cells
            return column.astype(str).astype(object)
        for row in _missing_rows(column)[:1]:
            raise DataError(f"{self.where(row, name)}: missing {what}; fill it in or drop the row")
        return column

    def is_numeric(self, name: str) -> bool:
        """Every cell is a number (none missing)."""
        column = self.columns[name]
        if column.dtype.kind == "O":
            return _all_numbers(column)
        return not (column.dtype.kind == "f" and np.isnan(column).any())

    def numbers(self, name: str, key: str) -> np.ndarray:
        """Column `name` as float64; a missing or non-numeric cell is an error naming its line."""
        column = self.column(name, key)
        if column.dtype.kind != "O":
            values = column.astype(np.float64)
            for row in np.flatnonzero(np.isnan(values))[:1]:
                raise DataError(f"{self.where(int(row), name)}: missing value; numbers are needed here")
            return values
        numbers = [_number(cell) for cell in column]
        for row, (cell, value) in enumerate(zip(column, numbers)):
            if value is None:
                raise DataError(f"{self.where(row, name)}: {_describe(cell)}; numbers are needed here")
        return np.array(numbers, dtype=np.float64)

    def where(self, row: int, column: str) -> str:
        return f"{self.locate(row)}, column '{column}'"


def _missing(cell: str | None) -> bool:
    return cell is None or cell.lower() in MISSING


def _missing_rows(column: np.ndarray) -> list[int]:
    """Rows of a text column whose cell is missing (each distinct text checked once)."""
    missing = {cell for cell in set(column.tolist()) if _missing(cell)}
    return [row for row, cell in enumerate(column) if cell in missing] if missing else []


def _all_numbers(column: np.ndarray) -> bool:
    return all(_number(cell) is not None for cell in set(column.tolist()))


def _number(cell: str | None) -> float | None:
    if _missing(cell):
        return None
    try:
        return float(cell)  # type: ignore[arg-type]
    except ValueError:
        return None


def _describe(cell: str | None) -> str:
    return "missing value" if _missing(cell) else f"'{cell}' is not a number"


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank row; rows of unequal length are errors with their line."""
    _check_file(path)
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


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"data.path: no file at '{path}'. Give the path of a CSV file with a header row.")


def _text_or_numbers(cells: list[str], keep_text: bool) -> np.ndarray:
    """A column as float64 when every cell is a number (and it is not kept as text), else its texts."""
    if not keep_text:
        numbers = [_number(cell) for cell in cells]
        if all(n is not None for n in numbers):
            return np.array(numbers, dtype=np.float64)
    return np.array(cells, dtype=object)


def read_table_python(path: Path, text: Collection[str] = ()) -> Table:
    """Read a CSV with Python's csv module: slow, but it knows each row's line (the reference for errors)."""
    numbered = _read_rows(path)
    if len(numbered) < 2:
        raise DataError(f"'{path}' needs a header row and at least one data row")
    header = [name.strip() for name in numbered[0][1]]
    body = numbered[1:]
    columns = {
        name: _text_or_numbers([row[j].strip() for _, row in body], name in text) for j, name in enumerate(header)
    }
    lines = [number for number, _ in body]
    return Table(path, header, columns, lambda row: f"'{path}' line {lines[row]}")


def read_table_arrow(path: Path, text: Collection[str] = ()) -> Table:
    """Read a CSV with pyarrow (about 20x faster); its errors are found again by `read_table_python`."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    _check_file(path)
    options = pacsv.ConvertOptions(null_values=[], strings_can_be_null=False)
    try:
        table = pacsv.read_csv(path, convert_options=options)
        names = [name.strip() for name in table.column_names]
        words = [raw for raw, name in zip(table.column_names, names) if name in text or not _is_number_type(table, raw)]
        if words:  # re-read the text columns as written (arrow would read 'true' as a boolean, 007 as 7)
            options = pacsv.ConvertOptions(column_types={raw: pa.string() for raw in words}, include_columns=words)
            texts = pacsv.read_csv(path, convert_options=options)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DataError(f"'{path}' is not a readable CSV file ({exc})") from None
    if table.num_rows < 1:
        raise DataError(f"'{path}' needs a header row and at least one data row")
    columns = {}
    for raw, name in zip(table.column_names, names):
        if raw in words:
            columns[name] = np.array([cell.strip() for cell in texts.column(raw).to_pylist()], dtype=object)
        else:
            columns[name] = table.column(raw).to_numpy().astype(np.float64)
    return Table(path, names, columns, lambda row: f"'{path}' row {row + 1}")


def _is_number_type(table: Any, name: str) -> bool:
    import pyarrow as pa

    kind = table.schema.field(name).type
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def read_table(path: Path, text: Collection[str] = ()) -> Table:
    """Read a CSV file with a header row (pyarrow when installed); columns in `text` keep their texts."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return read_table_python(path, text)
    return read_table_arrow(path, text)


def with_table(path: Path, use: Callable[[Table], T], text: Collection[str] = ()) -> T:
    """`use(table)` on the fast reader's table; when that fails, again on Python's, whose error names the line.

    The two readers agree on every well-formed file; only a problem (a missing cell, a
    word among numbers, a ragged row, bad bytes) is looked at twice, so the message is
    the same with or without pyarrow.
    """
    try:
        return use(read_table(path, text))
    except DataError:
        return use(read_table_python(path, text))


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
    """(N, F) inputs, no missing cells: float64 when every column is numeric, else objects (floats and strings)."""
    columns = [
        table.cells(name, "features") if name in categorical else table.numbers(name, "features")
        for name in features
    ]
    if not categorical & set(features):
        return np.stack(columns, axis=1) if columns else np.empty((len(table), 0))
    cells = np.empty((len(table), len(features)), dtype=object)
    for i, column in enumerate(columns):
        cells[:, i] = column
    return cells


def infer_categorical(table: Table, features: list[str], declared: list[str]) -> set[str]:
    """Columns to one-hot: those declared, and the text columns where no cell is a number."""
    categorical = set(declared)
    for name in features:
        column = table.column(name, "features")
        if name in categorical or column.dtype.kind != "O":
            continue
        cells = [c for c in set(column.tolist()) if not _missing(c)]
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
    categorical = set(state["categories"])
    cells = with_table(path, lambda table: feature_cells(table, state["features"], categorical), categorical)
    return encode(cells, state)


def target_values(table: Table, name: str) -> np.ndarray:
    """The target column: floats when every cell is a number, else the strings (class names)."""
    column = table.column(name, "target")
    if column.dtype.kind != "O":
        return table.numbers(name, "target")
    cells = table.cells(name, "target", what="target")
    if _all_numbers(cells):
        return np.array([float(c) for c in cells], dtype=np.float64)
    return cells.astype(str)


def table_raw(table: Table, p: ColumnsParams) -> RawData:
    """Inputs and targets of a table by the configured columns (`csv`, `parquet`, `hf`)."""
    table.index(p.target, "target")
    features = p.features or [name for name in table.header if name != p.target]
    if p.target in features:
        raise DataError(f"data.features: the target column '{p.target}' cannot also be a feature")
    for name in features + p.categorical:
        table.index(name, "features" if name in features else "categorical")
    categorical = infer_categorical(table, features, p.categorical)
    x = feature_cells(table, features, categorical)
    return RawData(x, target_values(table, p.target), encoder=TableEncoder(features, categorical))


@register_source(CsvParams)
def csv_source(p: CsvParams) -> RawData:
    """Tabular rows from a CSV file: `target` column, numeric and categorical `features`."""
    raw = with_table(p.path, lambda table: table_raw(table, p), set(p.categorical))
    if p.validation_path is not None:
        if not p.validation_path.is_file():
            raise DataError(
                f"data.validation_path: no file at '{p.validation_path}'. Give a CSV with the same columns as data.path."
            )
        encoder: Any = raw.encoder
        raw.x_val, raw.y_val = with_table(
            p.validation_path,
            lambda table: _validation_rows(table, encoder.features, encoder.categorical, p.target, raw.y_train),
            set(p.categorical),
        )
    return raw


def _validation_rows(
    table: Table, features: list[str], categorical: set[str], target: str, y_train: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of `data.validation_path`, read with the training file's columns."""
    path = table.path
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
