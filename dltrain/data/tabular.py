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
from typing import Any, Callable, Collection, Sequence, TypeVar

import numpy as np

from .._registry import did_you_mean
from ..errors import DataError
from ..schema.data import ColumnsParams, CsvParams
from .base import RawData, register_source
from .splits import distinct_files

T = TypeVar("T")

MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}

Locate = Callable[[int], str]


@dataclass
class Texts:
    """A column of texts, dictionary-encoded: row i holds `words[codes[i]]` (None: a Parquet null).

    A column of a million cells holds a handful of distinct words, so every check
    (missing? a number?) looks at each word once, and the rows by their codes.
    """

    codes: np.ndarray  # (N,) int64
    words: list[str | None]

    def __len__(self) -> int:
        return len(self.codes)

    @classmethod
    def of(cls, cells: Sequence[str | None]) -> "Texts":
        index: dict[str | None, int] = {}
        codes = np.fromiter((index.setdefault(c, len(index)) for c in cells), dtype=np.int64, count=len(cells))
        return cls(codes, list(index))

    def rows(self, words: Callable[[str | None], bool]) -> np.ndarray:
        """The rows whose word passes `words`, in order."""
        chosen = [code for code, word in enumerate(self.words) if words(word)]
        return np.flatnonzero(np.isin(self.codes, chosen)) if chosen else np.empty(0, dtype=np.int64)

    def strings(self) -> np.ndarray:
        """(N,) str array of the cells."""
        return np.asarray([str(w) for w in self.words], dtype=str)[self.codes]


Column = np.ndarray | Texts  # numbers (NaN: missing), or texts


@dataclass
class Table:
    """A table's header and columns: numbers where every cell is one, else texts (`Texts`).

    A CSV's text cells are stripped; `locate` turns a row index into where that row is
    ("'f.csv' line 8"), for error messages.
    """

    path: Path | str
    header: list[str]
    columns: dict[str, Column]
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

    def column(self, name: str, key: str) -> Column:
        self.index(name, key)
        return self.columns[name]

    def texts(self, name: str, key: str, what: str = "value") -> Texts:
        """Column `name` as texts (numbers as read), a missing cell refused with its row."""
        column = self.column(name, key)
        if not isinstance(column, Texts):
            values = self.numbers(name, key)  # refuses NaN cells
            return Texts.of([_text(v) for v in values.tolist()])
        for row in column.rows(_missing)[:1]:
            raise DataError(f"{self.where(int(row), name)}: missing {what}; fill it in or drop the row")
        return column

    def is_numeric(self, name: str) -> bool:
        """Every cell is a number (none missing)."""
        column = self.columns[name]
        if isinstance(column, Texts):
            return all(_number(word) is not None for word in column.words)
        return not (column.dtype.kind == "f" and np.isnan(column).any())

    def numbers(self, name: str, key: str) -> np.ndarray:
        """Column `name` as float64; a missing or non-numeric cell is an error naming its line."""
        column = self.column(name, key)
        if not isinstance(column, Texts):
            values = np.asarray(column, dtype=np.float64)
        else:
            for row in column.rows(lambda word: _number(word) is None)[:1]:
                cell = column.words[column.codes[row]]
                raise DataError(f"{self.where(int(row), name)}: {_describe(cell)}; numbers are needed here")
            values = np.asarray([_number(word) for word in column.words], dtype=np.float64)[column.codes]
        for row in np.flatnonzero(~np.isfinite(values))[:1]:  # 'inf' parses as a number, and trains as NaN
            what = "missing value" if np.isnan(values[row]) else f"infinite value ({values[row]:g})"
            raise DataError(f"{self.where(int(row), name)}: {what}; finite numbers are needed here")
        return values

    def where(self, row: int, column: str) -> str:
        return f"{self.locate(row)}, column '{column}'"


def _text(value: float) -> str:
    """A number as a CSV would hold it: 3, not 3.0."""
    return str(int(value)) if value.is_integer() else str(value)


def _missing(cell: str | None) -> bool:
    return cell is None or cell.lower() in MISSING


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


def _check_header(path: Path, names: list[str]) -> None:
    """Every column named once: a name given twice would leave which column it means to a guess."""
    for j, name in enumerate(names):
        if name in names[:j]:
            raise DataError(
                f"'{path}' line 1: the header names '{name}' twice (columns {names.index(name) + 1} and {j + 1}); "
                f"give every column its own name"
            )


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"data.path: no file at '{path}'. Give the path of a CSV file with a header row.")


def _text_or_numbers(cells: list[str], keep_text: bool) -> Column:
    """A column as float64 when every cell is a number (and it is not kept as text), else its texts."""
    texts = Texts.of(cells)
    if keep_text or not all(_number(word) is not None for word in texts.words):
        return texts
    return np.array([_number(cell) for cell in cells], dtype=np.float64)


def read_table_python(path: Path, text: Collection[str] = ()) -> Table:
    """Read a CSV with Python's csv module: slow, but it knows each row's line (the reference for errors)."""
    numbered = _read_rows(path)
    if len(numbered) < 2:
        raise DataError(f"'{path}' needs a header row and at least one data row")
    header = [name.strip() for name in numbered[0][1]]
    _check_header(path, header)
    body = numbered[1:]
    columns = {
        name: _text_or_numbers([row[j].strip() for _, row in body], name in text) for j, name in enumerate(header)
    }
    lines = [number for number, _ in body]
    return Table(path, header, columns, lambda row: f"'{path}' line {lines[row]}")


def read_table_arrow(path: Path, text: Collection[str] = ()) -> Table:
    """Read a CSV with pyarrow (threads, C++: 10-20x faster); `with_table` finds its errors again with Python's."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    _check_file(path)
    options = pacsv.ConvertOptions(null_values=[], strings_can_be_null=False)
    try:
        table = pacsv.read_csv(path, convert_options=options)
        names = [name.strip() for name in table.column_names]
        _check_header(path, names)
        kinds = {raw: _kind(table.schema.field(raw).type) for raw in table.column_names}
        words = [raw for raw, name in zip(table.column_names, names) if name in text or kinds[raw] != "number"]
        again = [raw for raw in words if kinds[raw] != "text"]
        if again:  # re-read as written what arrow converted ('true' to a boolean, 007 to 7, dates)
            options = pacsv.ConvertOptions(column_types={raw: pa.string() for raw in again}, include_columns=again)
            texts = pacsv.read_csv(path, convert_options=options)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DataError(f"'{path}' is not a readable CSV file ({exc})") from None
    if table.num_rows < 1:
        raise DataError(f"'{path}' needs a header row and at least one data row")
    columns: dict[str, Column] = {}
    for raw, name in zip(table.column_names, names):
        if raw in words:
            columns[name] = arrow_texts((texts if raw in again else table).column(raw), strip=True)
        else:
            columns[name] = np.asarray(table.column(raw).to_numpy(), dtype=np.float64)
    return Table(path, names, columns, lambda row: f"'{path}' row {row + 1}")


def arrow_texts(column: Any, strip: bool = False) -> Texts:
    """An Arrow column of strings as `Texts` (dictionary-encoded in C++, nulls as None)."""
    import pyarrow.compute as pc

    if strip:
        column = pc.utf8_trim_whitespace(column)
    encoded = column.combine_chunks().dictionary_encode(null_encoding="encode")
    return Texts(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist())


def _kind(kind: Any) -> str:
    """'number', 'text' (as written) or 'other' (booleans, dates: converted by arrow) for an Arrow type."""
    import pyarrow as pa

    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return "number"
    return "text" if pa.types.is_string(kind) or pa.types.is_large_string(kind) else "other"


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


def feature_cells(table: Table, features: list[str], encoder: "TableEncoder") -> np.ndarray:
    """(N, F) float64 inputs, no missing cell: numbers, and for categorical columns the encoder's word codes."""
    columns = [
        encoder.code(name, table.texts(name, "features"))
        if name in encoder.categorical
        else table.numbers(name, "features")
        for name in features
    ]
    return np.stack(columns, axis=1) if columns else np.empty((len(table), 0))


def infer_categorical(table: Table, features: list[str], declared: list[str]) -> set[str]:
    """Columns to one-hot: those declared, and the text columns where no cell is a number."""
    categorical = set(declared)
    for name in features:
        column = table.column(name, "features")
        if name in categorical or not isinstance(column, Texts):
            continue
        words = [w for w in column.words if not _missing(w)]
        if words and all(_number(w) is None for w in words):
            categorical.add(name)
    return categorical


class TableEncoder:
    """One-hot encodes the categorical columns with categories seen in the training split.

    Categorical cells reach it as codes into its vocabulary (`code`), so the inputs are
    one float array, however many rows; `fit` and `transform` read the codes.
    """

    def __init__(self, features: list[str], categorical: set[str]) -> None:
        self.features = features
        self.categorical = categorical
        self.vocabulary: dict[str, dict[str, int]] = {name: {} for name in categorical}

    def code(self, name: str, texts: Texts) -> np.ndarray:
        """(N,) float64 codes of a categorical column's cells in this encoder's vocabulary (new words added)."""
        index = self.vocabulary[name]
        mapping = np.array([index.setdefault(str(w), len(index)) for w in texts.words], dtype=np.float64)
        return mapping[texts.codes]

    def _words(self, name: str) -> np.ndarray:
        return np.array(list(self.vocabulary[name]), dtype=object)

    def fit(self, x_train: np.ndarray) -> dict[str, Any]:
        categories = {
            name: sorted(self._words(name)[np.unique(x_train[:, i].astype(np.int64))].tolist())
            for i, name in enumerate(self.features)
            if name in self.categorical
        }
        return {"features": self.features, "categories": categories}

    def transform(self, x: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        """(N, F) codes → (N, F') float32, categories one-hot (a word unseen in training: all zeros)."""
        parts = []
        for i, name in enumerate(state["features"]):
            if name not in state["categories"]:
                parts.append(x[:, i : i + 1].astype(np.float32))
                continue
            position = {word: j for j, word in enumerate(state["categories"][name])}
            lookup = np.array([position.get(w, -1) for w in self._words(name)] + [-1], dtype=np.int64)
            column = lookup[x[:, i].astype(np.int64)]
            onehot = np.zeros((len(x), len(position)), dtype=np.float32)
            seen = np.flatnonzero(column >= 0)
            onehot[seen, column[seen]] = 1.0
            parts.append(onehot)
        return np.concatenate(parts, axis=1) if parts else np.empty((len(x), 0), dtype=np.float32)


def read_features(path: Path, state: dict[str, Any]) -> np.ndarray:
    """New rows of a CSV encoded as training did (`state` from the checkpoint); for `predict`."""
    return read_named_features(path, {"": state})[""]


def read_named_features(path: Path, states: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """New rows of a CSV, each named input's columns encoded as training did (`states` from the checkpoint)."""
    encoders = {name: TableEncoder(state["features"], set(state["categories"])) for name, state in states.items()}
    text = {column for encoder in encoders.values() for column in encoder.categorical}

    def cells(table: Table) -> dict[str, np.ndarray]:
        return {name: feature_cells(table, encoder.features, encoder) for name, encoder in encoders.items()}

    found = with_table(path, cells, text)
    return {name: encoders[name].transform(found[name], state) for name, state in states.items()}


def target_values(table: Table, name: str) -> np.ndarray:
    """The target column: floats when every cell is a number, else the strings (class names)."""
    column = table.column(name, "target")
    if not isinstance(column, Texts):
        return table.numbers(name, "target")
    texts = table.texts(name, "target", what="target")
    if all(_number(w) is not None for w in texts.words):
        return table.numbers(name, "target")
    return texts.strings()


def table_raw(table: Table, p: ColumnsParams) -> RawData:
    """Inputs and targets of a table by the configured columns (`csv`, `parquet`, `hf`)."""
    if not isinstance(p.target, str) or p.inputs is not None:
        raise DataError(
            "data.target by output and data.inputs by name are for a model with named inputs or several "
            "outputs (model.inputs, model.outputs); this model has one of each: give one target column"
        )
    table.index(p.target, "target")
    features = p.features or [name for name in table.header if name != p.target]
    if p.target in features:
        raise DataError(f"data.features: the target column '{p.target}' cannot also be a feature")
    for name in features + p.categorical:
        table.index(name, "features" if name in features else "categorical")
    encoder = TableEncoder(features, infer_categorical(table, features, p.categorical))
    x = feature_cells(table, features, encoder)
    return RawData(x, target_values(table, p.target), encoder=encoder)


@register_source(CsvParams)
def csv_source(p: CsvParams) -> RawData:
    """Tabular rows from a CSV file: `target` column, numeric and categorical `features`."""
    raw = with_table(p.path, lambda table: table_raw(table, p), set(p.categorical))
    encoder: Any = raw.encoder
    for key in HELD_OUT:
        path = held_out_file(p, key)
        if path is not None:
            x, y = with_table(
                path,
                lambda table, key=key: _held_out_rows(table, encoder, str(p.target), raw.y_train, key),  # type: ignore[misc]
                set(p.categorical),
            )
            setattr(raw, f"x_{HELD_OUT[key]}", x)
            setattr(raw, f"y_{HELD_OUT[key]}", y)
    return raw


HELD_OUT = {"validation_path": "val", "test_path": "test"}  # the key of a held-out file -> its split


def held_out_file(p: CsvParams, key: str) -> Path | None:
    """`data.validation_path` or `data.test_path`, when given; an error when it names no file, or the
    training file or the other held-out file."""
    path: Path | None = getattr(p, key)
    if path is not None and not path.is_file():
        raise DataError(f"data.{key}: no file at '{path}'. Give a CSV with the same columns as data.path.")
    distinct_files({"path": p.path, "validation_path": p.validation_path, "test_path": p.test_path})
    return path


def _held_out_rows(
    table: Table, encoder: TableEncoder, target: str, y_train: np.ndarray, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a held-out file (`key`: validation_path, test_path), read with the training file's columns."""
    table.index(target, key)
    for name in encoder.features:
        table.index(name, key)
    return feature_cells(table, encoder.features, encoder), held_out_target(table, target, y_train, key)


def held_out_target(table: Table, target: str, y_train: np.ndarray, key: str) -> np.ndarray:
    """A held-out file's target column; class names where data.path has class names, numbers where numbers."""
    y = target_values(table, target)
    if (y.dtype.kind == "U") != (y_train.dtype.kind == "U"):
        kinds = {True: "class names", False: "numbers"}
        raise DataError(
            f"data.{key}: the target column '{target}' of '{table.path}' holds "
            f"{kinds[y.dtype.kind == 'U']}, but in data.path it holds {kinds[y_train.dtype.kind == 'U']}"
        )
    return y


# --- several named inputs and outputs (`inputs: {input: [columns]}`, `target: {output: column}`) ----


@dataclass
class NamedColumns:
    """The columns of each named input and each output, and each input's encoder (fitted on training)."""

    inputs: dict[str, list[str]]
    targets: dict[str, str]
    encoders: dict[str, TableEncoder]


def named_columns(
    table: Table, inputs: dict[str, list[str]], targets: dict[str, str], categorical: list[str]
) -> NamedColumns:
    """Check that every named column is in the training file; a column of words (or one listed under
    `categorical`) is one-hot encoded, as for one input."""
    for name, columns in inputs.items():
        for column in columns:
            table.index(column, f"inputs.{name}")
    for output, column in targets.items():
        table.index(column, f"target.{output}")
        users = [name for name, columns in inputs.items() if column in columns]
        if users:
            raise DataError(
                f"data.target.{output}: the column '{column}' is also an input column (inputs.{users[0]}); "
                f"a target cannot be an input"
            )
    for column in categorical:
        table.index(column, "categorical")
    encoders = {
        name: TableEncoder(columns, infer_categorical(table, columns, [c for c in categorical if c in columns]))
        for name, columns in inputs.items()
    }
    return NamedColumns(inputs, targets, encoders)


def named_rows(
    table: Table, spec: NamedColumns, key: str | None = None, y_train: dict[str, np.ndarray] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each input's cells (categorical columns as its encoder's codes) and each output's target column;
    for a held-out file (`key`, with the training targets `y_train`) the columns are checked first."""
    if key is not None:
        for column in [*(c for columns in spec.inputs.values() for c in columns), *spec.targets.values()]:
            table.index(column, key)
    x = {name: feature_cells(table, columns, spec.encoders[name]) for name, columns in spec.inputs.items()}
    y = {
        output: target_values(table, column)
        if key is None or y_train is None
        else held_out_target(table, column, y_train[output], key)
        for output, column in spec.targets.items()
    }
    return x, y
