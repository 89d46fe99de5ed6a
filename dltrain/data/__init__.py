"""Data sources (one module per family, imported when its source is loaded) and the shared loading path."""

from __future__ import annotations

from typing import Any

from ..schema.config import ValidationMode
from ..schema.data import SOURCES, DataParams
from ..schema.losses import Task
from .base import DataBundle, Preprocessing, RawData, Split, assemble


def read_source(params: Any) -> RawData:
    """The configured source's arrays, as it reads them (before splits and preprocessing)."""
    return SOURCES.get(params.source).obj(params)


def load_data(
    params: Any,
    task: Task,
    validation_split: float,
    preprocessing: Preprocessing | None = None,
    validation_mode: ValidationMode = "auto",
) -> DataBundle:
    """Read the configured source (a `DataParams` model) and make its splits; `preprocessing` reuses stored statistics."""
    raw = read_source(params)
    return assemble_any(raw, params, task, validation_split, preprocessing, validation_mode)


def is_text(raw: Any) -> bool:
    """A text source's read: strings, tokenized after the split (`dltrain.data.text`), not arrays."""
    return not hasattr(raw, "x_train")


def assemble_any(
    raw: Any,
    params: Any,
    task: Task,
    validation_split: float,
    preprocessing: Preprocessing | None = None,
    validation_mode: ValidationMode = "auto",
) -> DataBundle:
    """The splits of what `read_source` read: arrays through `assemble`, text through `assemble_text`."""
    if is_text(raw):
        from .text import assemble_text

        return assemble_text(raw, params, task, validation_split, preprocessing, validation_mode)
    return assemble(raw, params, task, validation_split, preprocessing, validation_mode)


__all__ = [
    "SOURCES",
    "DataBundle",
    "DataParams",
    "Preprocessing",
    "RawData",
    "Split",
    "assemble_any",
    "is_text",
    "load_data",
    "read_source",
]
