"""`timeseries_csv`: sliding windows over a CSV of time steps, predicting a value `horizon` steps on.

Sample i is rows `[i, i + window)` of the feature `columns` (shape `[window, features]`,
as the recurrent layers take it) and its target is `target` at row
`i + window - 1 + horizon`. Splits are chronological: the test set is the last
`test_split` of the windows and the validation set the last `validation_split` of the
rest, so no training target lies after a validation or test target, and statistics
(`normalize: standardize`) come from the training windows only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError
from ..schema.data import TimeseriesParams
from .base import RawData, register_source
from .tabular import Table, with_table


class WindowColumns:
    """Records which columns (and window) the model reads, so `predict` windows new files alike."""

    def __init__(self, columns: list[str], window: int) -> None:
        self.columns, self.window = columns, window

    def fit(self, x_train: np.ndarray) -> dict[str, Any]:
        return {"columns": self.columns, "window": self.window}

    def transform(self, x: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        return x


def numeric_columns(table: Table) -> list[str]:
    """The columns whose every cell is a number (a date column, say, is left out)."""
    return [name for name in table.header if table.is_numeric(name)]


def windows(values: np.ndarray, window: int) -> np.ndarray:
    """(T, F) → (T - window + 1, window, F): every run of `window` consecutive rows."""
    if len(values) < window:
        raise DataError(f"{len(values)} rows are fewer than one window of {window}; give more rows or a smaller window")
    view = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # (N, F, window)
    return np.ascontiguousarray(view.transpose(0, 2, 1), dtype=np.float32)


def read_series(table: Table, columns: list[str]) -> np.ndarray:
    """(T, F) float32 of `columns`; a missing or non-numeric cell names its line and column."""
    return np.stack([table.numbers(name, "columns") for name in columns], axis=1).astype(np.float32)


def _columns(table: Table, p: TimeseriesParams) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The feature columns' names, their (T, F) values and the target column's (T,) values."""
    columns = p.columns or numeric_columns(table)
    if not columns:
        raise DataError(f"data.columns: '{p.path}' has no all-numeric column; name the feature columns")
    return columns, read_series(table, columns), table.numbers(p.target, "target").astype(np.float32)


@register_source(TimeseriesParams)
def timeseries_csv(p: TimeseriesParams) -> RawData:
    """Windows `[window, features]` of a CSV time series; the target `horizon` steps after each."""
    columns, series, target = with_table(p.path, lambda table: _columns(table, p))
    count = len(series) - p.window - p.horizon + 1
    if count < 2:
        raise DataError(f"'{p.path}' has {len(series)} rows: too few for window {p.window} and horizon {p.horizon}")
    x = windows(series, p.window)[:count]
    y = target[p.window - 1 + p.horizon :][:count]
    cut = count - max(1, int(round(count * p.test_split)))
    return RawData(x[:cut], y[:cut], x[cut:], y[cut:], encoder=WindowColumns(columns, p.window), chronological=True)
