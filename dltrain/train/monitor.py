"""Watching one value of the epoch row (`val_loss`, `val_accuracy`, ...) for improvement.

EarlyStopping, ModelCheckpoint, ReduceLROnPlateau and the `reduce_on_plateau` schedule
all ask the same question each epoch: did the monitored value improve? They share this
one answer, including `mode: auto` (max for metrics that grow when better, such as
accuracy, read from the metric registry; min for losses and errors).
"""

from __future__ import annotations

import math
from typing import Any

from ..schema.metrics import METRICS
from ..schema.schedules import Mode


def greater_is_better(key: str) -> bool:
    """Whether `key` (a row column such as `val_accuracy`) improves by growing."""
    name = key.removeprefix("val_")
    return name in METRICS and bool(METRICS.get(name).obj.greater_is_better)


class Monitor:
    """The best value of one row column so far, and the epochs since it improved."""

    def __init__(self, key: str, mode: Mode = "auto", min_delta: float = 0.0) -> None:
        self.key = key
        self.mode = ("max" if greater_is_better(key) else "min") if mode == "auto" else mode
        self.min_delta = min_delta
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0

    def improves(self, value: float) -> bool:
        """Whether `value` beats the best by more than `min_delta` (a NaN never does)."""
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, row: dict[str, Any]) -> bool:
        """Read this epoch's value; True when it is a new best."""
        value = float(row[self.key])
        if self.improves(value):
            self.best, self.best_epoch, self.wait = value, int(row["epoch"]), 0
            return True
        self.wait += 1
        return False

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
