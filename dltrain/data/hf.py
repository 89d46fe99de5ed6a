"""`hf`: a Hugging Face dataset, saved with `save_to_disk` or already in the local cache.

`datasets` is an optional extra (`pip install 'dltrain[hf]'`), imported only here and
only when this source is loaded; nothing is downloaded. Its splits are used as the
training, validation and test sets when present. Inputs are either a column of images
(decoded to [C, H, W], values 0-255) or table columns, which go through the same path as
a CSV's (`features`, `categorical`, class names); a `ClassLabel` target gives the
class names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._registry import did_you_mean
from ..errors import DataError
from ..schema.data import HfParams
from .base import RawData, register_source
from .parquet import arrow_table
from .tabular import TableEncoder, feature_cells, table_raw, target_values


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
    """Split name → `Dataset` of a folder written by `save_to_disk`, or of a dataset in the local cache."""
    datasets = _datasets()
    try:
        if Path(path).is_dir():
            loaded = datasets.load_from_disk(path)
        else:
            loaded = datasets.load_dataset(path)
    except Exception as exc:  # datasets raises many kinds (FileNotFoundError, ConnectionError, its own)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"data.path: '{path}' is neither a folder written by Dataset.save_to_disk nor a dataset in the "
            f"local Hugging Face cache ({reason})"
        ) from None
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    return dict(loaded)


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


@register_source(HfParams)
def hf(p: HfParams) -> RawData:
    """A Hugging Face dataset (saved with `save_to_disk`, or in the local cache): image or feature columns."""
    splits = open_dataset(p.path)
    train = _split(splits, p.split, p.path)
    held = {role: splits.get(name) for role, name in (("val", p.validation), ("test", p.test)) if name != p.split}
    where = {role: f"{p.path}[{name}]" for role, name in (("train", p.split), ("val", p.validation), ("test", p.test))}
    _check_columns(train, [p.target], "target", where["train"])
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
