"""Data sources (one module per family) and the shared loading path."""

from __future__ import annotations

from . import digits, images, npz, synthetic, tabular, timeseries, vision  # noqa: F401  (register the sources)
from .base import SOURCES, DataBundle, DataParams, Preprocessing, Split, assemble
from .splits import ValidationMode
from ..losses import Task


def load_data(
    params: DataParams, task: Task, validation_split: float, preprocessing: Preprocessing | None = None,
    validation_mode: ValidationMode = "auto",
) -> DataBundle:
    """Read the configured source and make its splits; `preprocessing` reuses stored statistics."""
    raw = SOURCES.get(params.source).obj(params)  # type: ignore[attr-defined]
    return assemble(raw, params, task, validation_split, preprocessing, validation_mode)


__all__ = ["SOURCES", "DataBundle", "DataParams", "Preprocessing", "Split", "load_data"]
