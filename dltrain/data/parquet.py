"""`parquet`: tabular rows from Parquet files (one file, a folder of them, or a glob).

The columns become the same `Table` a CSV file does, so `target`, `features`,
`categorical`, class names and the preprocessing keys behave exactly as for `csv`. Only
the configured columns are read. Arrow tables of other origins (a Hugging Face dataset)
become tables through `arrow_table` too.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .._registry import did_you_mean
from ..errors import DataError
from ..schema.data import ParquetParams
from .base import RawData, register_source
from .streaming import ColumnsKept, Piece, columns_into, numeric_type, stream_raw, streamed, unreadable
from .tabular import MISSING, Column, Table, TableEncoder, arrow_texts, feature_cells, table_raw, target_values


def parquet_files(path: str) -> list[Path]:
    """The files `data.path` names: itself, the *.parquet files of a folder (name order), or a glob's matches."""
    given = Path(path)
    if given.is_dir():
        files = sorted(p for p in given.rglob("*.parquet") if p.is_file())
        where = f"the folder '{given}' holds no .parquet file"
    elif glob.has_magic(path):
        files = sorted(Path(p) for p in glob.glob(path, recursive=True) if Path(p).is_file())
        where = f"the pattern '{path}' matches no file"
    else:
        files = [given] if given.is_file() else []
        where = f"no file at '{given}'"
    if not files:
        raise DataError(f"data.path: {where}. Give a .parquet file, a folder of them, or a glob (data/*.parquet).")
    return files


def columns_agree(reference: tuple[Any, list[str]], path: Any, names: list[str]) -> None:
    """Without `data.features` every column is an input, so every file must hold the same columns
    (else one file's rows would lack cells, or its extra column would go unread)."""
    first, expected = reference
    extra, lacking = [n for n in names if n not in expected], [n for n in expected if n not in names]
    if extra or lacking:
        detail = "; ".join(
            f"{what} {', '.join(map(repr, cols))}"
            for what, cols in ((f"only '{path}' has", extra), (f"'{path}' lacks", lacking))
            if cols
        )
        raise DataError(
            f"the files of data.path hold different columns: {detail} (compared with '{first}'). Without "
            f"data.features every column is an input: list the inputs in data.features, or give the files the same columns"
        )


def read_parquet(files: list[Path], columns: dict[str, str] | None) -> tuple[Any, list[int]]:
    """One Arrow table of `columns` (name → the data key that named it; all when None) of every file, and each file's rows.

    A damaged file or an absent column is an error naming the file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables, reference = [], None
    for file in files:
        try:
            names = pq.read_schema(file).names
            if columns is None:
                reference = reference or (file, names)
                columns_agree(reference, file, names)
            else:
                for column, key in columns.items():
                    if column not in names:
                        raise DataError(
                            f"data.{key}: '{file}' has no column '{column}'.{did_you_mean(column, names)} "
                            f"Columns: {', '.join(names)}"
                        )
            tables.append(pq.read_table(file, columns=list(columns or names)))
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"'{file}' is not a readable Parquet file ({exc})") from None
    try:
        return pa.concat_tables(tables, promote_options="permissive"), [t.num_rows for t in tables]
    except pa.ArrowException as exc:
        raise DataError(f"the files of data.path disagree on their columns' types ({exc})") from None


def arrow_table(table: Any, name: str, locate: Any) -> Table:
    """A dltrain `Table` of an Arrow table: numbers as numbers (nulls as NaN), strings as `Texts` (nulls as None)."""
    import pyarrow as pa

    columns: dict[str, Column] = {}
    for column_name, column in zip(table.column_names, table.columns):
        kind = column.type
        if pa.types.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            values = column.to_numpy()
            columns[column_name] = values.astype(np.float64) if values.dtype.kind == "b" else values
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            columns[column_name] = arrow_texts(column)
        else:
            raise DataError(
                f"{name}: column '{column_name}' holds {kind} values; dltrain reads columns of numbers or text. "
                f"Convert it, or leave it out of data.features"
            )
    return Table(name, list(table.column_names), columns, locate)


def _locator(files: list[Path], counts: list[int]) -> Any:
    """Row index of the joined table → "'file' row r" (rows counted from 1 within each file)."""
    starts = np.cumsum([0] + counts)

    def locate(row: int) -> str:
        i = int(np.searchsorted(starts, row, side="right")) - 1
        return f"'{files[i]}' row {row - int(starts[i]) + 1}"

    return locate


@register_source(ParquetParams)
def parquet(p: ParquetParams) -> RawData:
    """Tabular rows from Parquet files (a file, a folder or a glob): `target` and `features` columns;
    streamed row group by row group when larger than `data.memory_limit` (or `data.streaming: true`)."""
    files = parquet_files(p.path)
    streamed = parquet_stream(p, files)
    if streamed is not None:
        return streamed
    numeric = numeric_features(files, p)
    if numeric is not None:
        return numeric_raw(files, numeric, str(p.target), p.path)
    columns = None if p.features is None else {**dict.fromkeys(p.features, "features"), str(p.target): "target"}
    data, counts = read_parquet(files, columns)
    name = str(files[0]) if len(files) == 1 else p.path
    return table_raw(arrow_table(data, name, _locator(files, counts)), p)


def numeric_features(files: list[Path], p: ParquetParams) -> list[str] | None:
    """The feature columns when every one holds numbers in every file and none is to be one-hot (the fast path),
    else None (the table path, which also says what is wrong with the columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(p.target, str) or p.inputs is not None or p.categorical:
        return None
    features, reference = p.features, None
    for file in files:
        try:
            schema = pq.read_schema(file)
        except (pa.ArrowException, OSError):
            return None
        if p.features is None:  # every column an input: the files must agree on them
            reference = reference or (file, schema.names)
            columns_agree(reference, file, schema.names)
        features = features or [name for name in schema.names if name != p.target]
        if p.target not in schema.names or p.target in features:
            return None
        if any(name not in schema.names or not numeric_type(schema.field(name).type) for name in features):
            return None
    return list(features or []) or None


def numeric_raw(files: list[Path], features: list[str], target: str, path: str) -> RawData:
    """Numeric feature columns read straight into one float32 `(rows, features)` array, one column of one row
    group at a time, so Arrow holds a column chunk, not a row group (the table path held Arrow's columns,
    NumPy's float64 columns and their stack at once: ~10x the data).

    A null or NaN cell is an error naming its file, row and column, as the table path's.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        counts = [pq.ParquetFile(file).metadata.num_rows for file in files]
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"one of the files of data.path is not a readable Parquet file ({exc})") from None
    x = np.empty((sum(counts), len(features)), dtype=np.float32)
    locate, start = _locator(files, counts), 0
    for file in files:
        try:
            reader = pq.ParquetFile(file, pre_buffer=False)
            for group in range(reader.metadata.num_row_groups):
                rows = reader.metadata.row_group(group).num_rows
                for column, name in enumerate(features):
                    values = reader.read_row_group(group, columns=[name], use_threads=False).column(0)
                    _fill(x[start : start + rows, column], values, start, name, locate)
                start += rows
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"'{file}' is not a readable Parquet file ({exc})") from None
    name = str(files[0]) if len(files) == 1 else path
    y, _ = read_parquet(files, {target: "target"})
    pa.default_memory_pool().release_unused()  # the column chunks' buffers, which the allocator would keep resident
    return RawData(x, target_values(arrow_table(y, name, locate), target), encoder=ColumnsKept(features))


def _fill(block: np.ndarray, values: Any, start: int, name: str, locate: Callable[[int], str]) -> None:
    """Copy an Arrow column of numbers into `block` (rows from `start` of column `name`); its first null or NaN
    cell is an error naming the file, row and column."""
    missing = values.is_null().to_numpy(zero_copy_only=False) if values.null_count else None
    if missing is None:
        start = 0
        for chunk in values.chunks:
            block[start : start + len(chunk)] = chunk.to_numpy()  # floats read without a copy, cast into place
            start += len(chunk)
        missing = np.isnan(block)
    for row in np.flatnonzero(missing)[:1]:
        raise DataError(f"{locate(start + int(row))}, column '{name}': missing value; numbers are needed here")


def read_features(path: Path, state: dict[str, Any]) -> np.ndarray:
    """New rows of a Parquet file encoded as training did (`state` from the checkpoint); for `predict`."""
    features = list(state["features"])
    data, counts = read_parquet([path], dict.fromkeys(features, "features"))
    encoder = TableEncoder(features, set(state["categories"]))
    table = arrow_table(data, str(path), _locator([path], counts))
    return encoder.transform(feature_cells(table, features, encoder), state)


# --- streaming: one row group at a time ------------------------------------------------


class ParquetShards:
    """Parquet files read one row group at a time, the feature columns only."""

    def __init__(self, files: list[str], target: str, features: list[str] | None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.problem: str | None = None  # why these files cannot be streamed (they may still fit in memory)
        self.files, self.target = files, target
        self.class_names: list[str] | None = None  # text labels' sorted names, once `read_y` read them
        self.pieces: list[Piece] = []
        start, every_column, reference = 0, features is None, None
        for path in files:
            try:
                meta = pq.ParquetFile(path).metadata
            except (OSError, pa.ArrowException) as exc:
                raise unreadable(path, exc, "Parquet file") from None
            schema = meta.schema.to_arrow_schema()
            if every_column:
                reference = reference or (path, schema.names)
                columns_agree(reference, path, schema.names)
            if features is None:
                features = [name for name in schema.names if name != target]
            for name, key in [(target, "target"), *((name, "features") for name in features)]:
                if name not in schema.names:
                    raise DataError(
                        f"data.{key}: '{path}' has no column '{name}'.{did_you_mean(name, schema.names)} "
                        f"Columns: {', '.join(schema.names)}"
                    )
            text = [name for name in features if not numeric_type(schema.field(name).type)]
            if text and not self.problem:
                self.problem = (
                    f"'{path}': column(s) {', '.join(map(repr, text))} are not numbers; streaming reads numeric "
                    f"features only. Leave them out of data.features, or set data.streaming: false"
                )
            for index in range(meta.num_row_groups):
                rows = meta.row_group(index).num_rows
                if rows:
                    self.pieces.append(Piece(path, index, start, rows))
                    start += rows
        self.features: list[str] = features or []
        self.sample_shape: tuple[int, ...] = (len(self.features),)

    def read_x(self, piece: Piece, wanted: np.ndarray | None, out: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            # Opened per piece: a reader kept open holds on to its last row group's buffers (64 MB a file).
            # One thread: a streaming worker has a core at most, and training needs the other.
            # pre_buffer off: it copies the row group's bytes once more before decoding (0.066 -> 0.038 s CPU
            # a 64 MB row group in the page cache); no memory map: from disk, its page faults cost twice
            # the CPU of plain reads (0.096 against 0.050 s a row group).
            source = pq.ParquetFile(piece.path, pre_buffer=False)
            table = source.read_row_group(piece.index, columns=self.features, use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise unreadable(piece.path, exc, part=f"row group {piece.index}") from None
        columns_into(table, self.features, wanted, out)

    def read_y(self) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.parquet as pq

        def columns() -> Iterator[tuple[str, Any]]:
            for path in self.files:
                try:
                    yield path, pq.read_table(path, columns=[self.target]).column(0)
                except (OSError, pa.ArrowException) as exc:
                    raise unreadable(path, exc, "Parquet file") from None

        y, self.class_names = read_targets(columns(), self.target)
        return y


class Labels:
    """Text labels met so far, across files: each distinct word once (its id: the order first seen)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def codes(self, column: Any, path: str, target: str) -> np.ndarray:
        """(rows,) ids of one file's labels, dictionary-encoded by Arrow; a missing one names its row."""
        encoded = column.combine_chunks().dictionary_encode(null_encoding="encode")
        words = encoded.dictionary.to_pylist()
        lookup = np.array(
            [-1 if w is None or w.lower() in MISSING else self.ids.setdefault(w, len(self.ids)) for w in words]
        )
        codes = lookup[encoded.indices.to_numpy(zero_copy_only=False)] if len(words) else np.empty(0, np.int64)
        for row in np.flatnonzero(codes < 0)[:1]:
            raise DataError(
                f"'{path}' row {int(row) + 1}, column '{target}': missing target; fill it in or drop the row"
            )
        return codes


def read_targets(
    columns: Iterable[tuple[str, Any]], target: str, names: list[str] | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """The target column of every file, one file at a time: numbers as they are (NaN for nulls, refused later with
    their index), or text labels as indices into their sorted names (`names`: those of every split, when the
    splits are read apart), with the names, as the in-memory path sorts them; labels that are all numbers written
    as text are numbers. Only the int64 indices are held, never a string per row."""
    numbers: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    labels = Labels()
    for path, column in columns:
        kind = column.type.value_type if _is_dictionary(column.type) else column.type
        if numeric_type(kind):
            numbers.append(np.asarray(column.to_numpy(), dtype=np.float64))
        elif _is_text(kind):
            codes.append(labels.codes(column, path, target))
        else:
            raise DataError(f"data.target: column '{target}' of '{path}' holds {kind} values, not numbers or labels")
        if numbers and codes:
            raise DataError(f"data.target: column '{target}' holds numbers in some files and text in others ('{path}')")
    if numbers:
        return np.concatenate(numbers), None
    words = list(labels.ids)
    values = _numbers(words)
    if values is not None:
        return values[np.concatenate(codes)], None
    names = names or sorted(words)
    position = {name: i for i, name in enumerate(names)}
    rank = np.array([position[word] for word in words], dtype=np.int64)  # id -> position among the sorted names
    return rank[np.concatenate(codes)], names


def _numbers(words: list[str]) -> np.ndarray | None:
    """The words as float64 when every one is a number (labels '0', '1' written as text), else None."""
    try:
        return np.asarray([float(w) for w in words], dtype=np.float64)
    except ValueError:
        return None


def _is_dictionary(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_dictionary(kind))


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def parquet_stream(params: ParquetParams, files: list[Path]) -> RawData | None:
    """`parquet` streamed, or None for the in-memory path (which also reads a target per named output)."""
    target = params.target
    if not isinstance(target, str):
        return None
    shards = streamed(params, lambda: ParquetShards([str(f) for f in files], target, params.features))
    if shards is False:
        return None
    assert isinstance(shards, ParquetShards)
    raw = stream_raw(params, shards, ColumnsKept(shards.features))
    raw.class_names, raw.named_classes = shards.class_names, shards.class_names is not None
    return raw
