"""`hf`: a Hugging Face dataset, saved with `save_to_disk` or already in the local cache.

`datasets` is an optional extra (`pip install 'dltrain[hf]'`), imported only here and
only when this source is loaded; nothing is downloaded. Its splits are used as the
training, validation and test sets when present. Inputs are a column of images
(decoded to [C, H, W], values 0-255), a column of texts (read as `text_csv` reads its
column: `RawText`, tokenized by `dltrain.data.text` with the tokenizer fitted on the
training split), or table columns, which go through the same path as a CSV's
(`features`, `categorical`, class names); a `ClassLabel` target gives the class names.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .._registry import did_you_mean
from ..errors import DataError
from ..schema.data import HfParams
from .base import RawData, register_source
from .parquet import arrow_table, read_targets
from .streaming import PIECE_BYTES, ColumnsKept, Piece, columns_into, numeric_type, stream_raw, streamed, unreadable
from .tabular import TableEncoder, feature_cells, table_raw, target_values
from .text import RawText, check_not_empty


def _datasets() -> Any:
    """The `datasets` package, offline: a name is looked up in the local cache only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        raise DataError("data.source: hf needs the 'datasets' package: pip install 'dltrain[hf]'") from None
    return datasets


def open_dataset(path: str) -> dict[str, Any]:
    """Split name → `Dataset` of a folder written by `save_to_disk`, or of a dataset prepared in the local cache.

    A name is resolved as `datasets` resolves it offline: the Arrow files that `load_dataset(name)` prepared
    once under `HF_DATASETS_CACHE` (`<name>/<config>/<version>/<hash>/`, `owner___name/...` for `owner/name`).
    Offline is forced for the call even when `datasets` was imported before with the Hub reachable.
    """
    datasets = _datasets()
    try:
        if Path(path).is_dir():
            loaded = datasets.load_from_disk(path)
        else:
            with _offline(datasets):
                loaded = datasets.load_dataset(path)
    except Exception as exc:  # datasets raises many kinds (FileNotFoundError, ConnectionError, its own)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, ConnectionError):  # offline, after the cache had no prepared copy
            reason = "no prepared copy of it there"
        raise DataError(
            f"data.path: '{path}' is neither a folder written by Dataset.save_to_disk nor a dataset in the "
            f"local Hugging Face cache ({datasets.config.HF_DATASETS_CACHE}: {reason}). Nothing is downloaded: "
            f"give a folder, or run datasets.load_dataset('{path}') once where the Hub is reachable"
        ) from None
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    return dict(loaded)


@contextmanager
def _offline(datasets: Any) -> Iterator[None]:
    """`datasets` in offline mode for one call: a name is looked up in the local cache, never on the Hub."""
    saved = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = saved


def _split(splits: dict[str, Any], name: str, path: str) -> Any:
    if name not in splits:
        raise DataError(
            f"data.split: '{path}' has no split '{name}'.{did_you_mean(name, list(splits))} Splits: {', '.join(splits)}"
        )
    return splits[name]


def _check_columns(dataset: Any, names: list[str], key: str, where: str) -> None:
    for name in names:
        if name not in dataset.column_names:
            raise DataError(
                f"data.{key}: '{where}' has no column '{name}'.{did_you_mean(name, dataset.column_names)} "
                f"Columns: {', '.join(dataset.column_names)}"
            )


def _images(dataset: Any, column: str, where: str) -> np.ndarray:
    """(N, C, H, W) uint8 of a column of images, all of one size (grey images get one channel)."""
    images: list[np.ndarray] = []
    for row, image in enumerate(dataset[column]):
        array = np.asarray(image)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
        if images and array.shape != images[0].shape:
            raise DataError(
                f"'{where}' row {row + 1}, column '{column}': an image of {list(array.shape)} among images of "
                f"{list(images[0].shape)}; store the images at one size (and one mode: RGB or L)"
            )
        images.append(array)
    return np.stack(images).astype(np.uint8)


def _table(dataset: Any, columns: list[str], where: str) -> Any:
    """The columns of a split as a dltrain table (its rows in the split's order)."""
    data = dataset.select_columns(columns).with_format("arrow")[:]
    return arrow_table(data, where, lambda row: f"'{where}' row {row + 1}")


def _class_names(dataset: Any, target: str) -> list[str] | None:
    feature = dataset.features.get(target)
    names = getattr(feature, "names", None)
    return list(names) if names else None


def _texts(dataset: Any, text: str, target: str, where: str) -> RawText:
    """The texts and labels of a split, as a text source reads them (labels as strings; empty texts refused)."""
    import pyarrow as pa

    _check_columns(dataset, [text], "text", where)
    _check_columns(dataset, [target], "target", where)
    kind = dataset.data.schema.field(text).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"data.text: column '{text}' of '{where}' holds {kind} values, not text")
    data = dataset.select_columns([text, target]).with_format("arrow")[:]
    texts, labels = data.column(text), data.column(target)
    raw = RawText(where=[f"'{where}' row {row + 1}, column '{text}'" for row in range(len(data))])
    raw.texts = [value or "" for value in texts.to_pylist()]
    for row, label in enumerate(labels.to_pylist()):
        if label is None or not str(label).strip():
            raise DataError(f"'{where}' row {row + 1}, column '{target}': missing target; fill it in or drop the row")
        raw.labels.append(str(label).strip())
    check_not_empty(raw)
    return raw


def hf_text(p: HfParams, train: Any, held: dict[str, Any], where: dict[str, str]) -> RawText:
    """A text column and its classes (the dataset's own validation and test splits too): tokenized later, as
    `text_csv`'s are, with the tokenizer fitted on the training split only."""
    assert p.text is not None
    if p.streaming is True:
        raise DataError(
            f"data.streaming: '{where['train']}' is read by its text column '{p.text}', which is tokenized in "
            f"memory; streaming reads numeric feature columns. Set data.streaming: auto or false"
        )
    raw = _texts(train, p.text, p.target, where["train"])
    for role, dataset in held.items():
        if dataset is not None:
            setattr(raw, role, _texts(dataset, p.text, p.target, where[role]))
    raw.class_names = _class_names(train, p.target)
    return raw


@register_source(HfParams)
def hf(p: HfParams) -> RawData | RawText:
    """A Hugging Face dataset (saved with `save_to_disk`, or in the local cache): image, text or feature columns."""
    splits = open_dataset(p.path)
    train = _split(splits, p.split, p.path)
    held = {role: splits.get(name) for role, name in (("val", p.validation), ("test", p.test)) if name != p.split}
    where = {role: f"{p.path}[{name}]" for role, name in (("train", p.split), ("val", p.validation), ("test", p.test))}
    _check_columns(train, [p.target], "target", where["train"])
    if p.text is not None:
        return hf_text(p, train, held, where)
    _check_columns(train, list(p.features or []), "features", where["train"])
    streamed = hf_stream(p, train, held, where)
    if streamed is not None:
        streamed.class_names = _class_names(train, p.target) or streamed.class_names
        return streamed
    if p.image is not None:
        _check_columns(train, [p.image], "image", where["train"])
        raw = RawData(_images(train, p.image, where["train"]), np.asarray(train[p.target]), value_range=255.0)
        for role, dataset in held.items():
            if dataset is not None:
                _check_columns(dataset, [p.image, p.target], "image", where[role])
                setattr(raw, f"x_{role}", _images(dataset, p.image, where[role]))
                setattr(raw, f"y_{role}", np.asarray(dataset[p.target]))
    else:
        columns = list(p.features or train.column_names)
        _check_columns(train, columns, "features", where["train"])
        raw = table_raw(_table(train, [*dict.fromkeys([*columns, p.target])], where["train"]), p)
        encoder: Any = raw.encoder
        assert isinstance(encoder, TableEncoder)
        for role, dataset in held.items():
            if dataset is not None:
                _check_columns(dataset, [*encoder.features, p.target], "features", where[role])
                table = _table(dataset, [*encoder.features, p.target], where[role])
                setattr(raw, f"x_{role}", feature_cells(table, encoder.features, encoder))
                setattr(raw, f"y_{role}", target_values(table, p.target))
    raw.class_names = _class_names(train, p.target)
    return raw


# --- streaming: record batches of the .arrow files -----------------------------------


class HfShards:
    """The Arrow files of a Hugging Face dataset split, read a few record batches at a time through a memory map
    opened for that piece only (so the pages read do not stay in the reader's resident memory)."""

    def __init__(self, dataset: Any, where: str, features: list[str] | None, target: str) -> None:
        import pyarrow as pa

        self.dataset, self.target, self.where = dataset, target, where
        self.names: list[str] | None = None  # the sorted class names of text labels over every split
        self.features = list(features or [c for c in dataset.column_names if c != target])
        self.sample_shape: tuple[int, ...] = (len(self.features),)
        self.problem: str | None = None
        files = [entry["filename"] for entry in dataset.cache_files]
        schema = dataset.data.schema
        text = [name for name in self.features if name in schema.names and not numeric_type(schema.field(name).type)]
        if getattr(dataset, "_indices", None) is not None or not files:
            self.problem = f"'{where}' is not stored as it is read (held in memory, or a selection of rows); " + (
                "save it with save_to_disk first, or set data.streaming: false"
            )
        elif text:
            self.problem = (
                f"'{where}': column(s) {', '.join(map(repr, text))} are not numbers; streaming reads numeric "
                f"features only. Leave them out of data.features, or set data.streaming: false"
            )
        self.pieces: list[Piece] = []
        piece_rows = max(1, PIECE_BYTES // (4 * max(1, len(self.features))))
        start = 0
        for path in files:
            try:
                with pa.memory_map(path) as source:
                    sizes = [batch.num_rows for batch in pa.ipc.open_stream(source)]
            except (OSError, pa.ArrowException) as exc:
                raise unreadable(path, exc, "Arrow file") from None
            first, held, in_file = 0, 0, 0
            for index, rows in enumerate(sizes):
                held += rows
                if held >= piece_rows or index == len(sizes) - 1:
                    if held:
                        self.pieces.append(Piece(path, first, start, held, in_file))
                    start, in_file, first, held = start + held, in_file + held, index + 1, 0

    def read_x(self, piece: Piece, wanted: np.ndarray | None, out: np.ndarray) -> None:
        import pyarrow as pa

        try:
            with pa.memory_map(piece.path) as source:
                batches, held = [], 0
                for index, batch in enumerate(pa.ipc.open_stream(source)):
                    if index >= piece.index and held < piece.rows:
                        batches.append(batch.select(self.features))
                        held += batch.num_rows
                columns_into(pa.Table.from_batches(batches), self.features, wanted, out)
        except (OSError, pa.ArrowException) as exc:
            raise unreadable(piece.path, exc, part=f"record batch {piece.index}") from None

    def read_y(self) -> np.ndarray:
        return read_targets([(self.where, target_column(self.dataset, self.target))], self.target, self.names)[0]


def target_column(dataset: Any, target: str) -> Any:
    """A split's target column, as Arrow."""
    return dataset.select_columns([target]).with_format("arrow")[:].column(0)


def hf_stream(params: HfParams, train: Any, held: dict[str, Any], where: dict[str, str]) -> RawData | None:
    """`hf` table columns streamed (the dataset's own validation and test splits too), or None for the in-memory path."""
    if params.image is not None:  # image columns are decoded in memory
        if params.streaming is True:
            raise DataError(
                f"data.streaming: '{where['train']}' is read by its image column '{params.image}', which is decoded "
                f"in memory; streaming reads numeric feature columns. Set data.streaming: auto or false"
            )
        return None
    shards = streamed(params, lambda: HfShards(train, where["train"], params.features, params.target))
    if shards is False:
        return None
    assert isinstance(shards, HfShards)
    splits = {"train": train, **{role: dataset for role, dataset in held.items() if dataset is not None}}
    # Text labels: the class names of every split first, so each split's indices count the same names.
    shards.names = read_targets(
        [(where[r], target_column(d, params.target)) for r, d in splits.items()], params.target
    )[1]
    raw = stream_raw(params, shards, ColumnsKept(shards.features))
    raw.class_names, raw.named_classes = shards.names, shards.names is not None
    for role, dataset in held.items():
        if dataset is not None:
            split = HfShards(dataset, where[role], shards.features, params.target)
            if split.problem:
                raise DataError(split.problem)
            split.names = shards.names
            rows = stream_raw(params, split)
            setattr(raw, f"x_{role}", rows.x_train)
            setattr(raw, f"y_{role}", rows.y_train)
    return raw
