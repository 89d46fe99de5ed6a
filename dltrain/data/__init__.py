"""Data sources (one module per family, imported when its source is loaded) and the shared loading path."""

from __future__ import annotations

from typing import Any

from ..schema.config import ValidationMode
from ..schema.data import SOURCES, DataParams
from ..schema.losses import Task
from .base import DataBundle, Preprocessing, Split, assemble


def load_data(
    params: Any,
    task: Task,
    validation_split: float,
    preprocessing: Preprocessing | None = None,
    validation_mode: ValidationMode = "auto",
) -> DataBundle:
    """Read the configured source (a `DataParams` model) and make its splits; `preprocessing` reuses stored statistics."""
    raw = SOURCES.get(params.source).obj(params)
    if not hasattr(raw, "x_train"):  # a text source: strings, tokenized after the split
        from .text import assemble_text

        return assemble_text(raw, params, task, validation_split, preprocessing, validation_mode)
    return assemble(raw, params, task, validation_split, preprocessing, validation_mode)


__all__ = ["SOURCES", "DataBundle", "DataParams", "Preprocessing", "Split", "load_data"]
