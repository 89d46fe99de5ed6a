"""Figures of a run: `curves.png` (per epoch, train and validation) and `confusion.png`.

matplotlib is imported here only, with the file-only Agg backend, so a machine without
a display can write them and training never pays for the import until the end.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .._files import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def save_figure(plt: Any, figure: Any, path: Path) -> None:
    """Write `figure` atomically (its format from the suffix), then free it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:
            figure.savefig(tmp, dpi=100, format=path.suffix.lstrip(".").lower() or None)
    finally:
        plt.close(figure)


def image_formats() -> dict[str, str]:
    """The file types matplotlib can write here: suffix → description."""
    from matplotlib.backend_bases import FigureCanvasBase

    _pyplot()
    return dict(FigureCanvasBase.get_supported_filetypes())


def write_curves(history: list[dict[str, Any]], path: Path) -> None:
    """One panel per quantity (loss, then each metric): train and val lines over the epochs."""
    if not history:
        return
    names = [k for k in history[0] if k not in ("epoch", "lr", "seconds") and not k.startswith("val_")]
    plt = _pyplot()
    columns = min(len(names), 3)
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, name in zip(axes.flat, names):
        ax.plot(epochs, [row.get(name) for row in history], marker=".", label="train")
        if f"val_{name}" in history[0]:
            ax.plot(epochs, [row.get(f"val_{name}") for row in history], marker=".", label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    figure.tight_layout()
    save_figure(plt, figure, path)


def write_confusion(matrix: list[list[int]], names: list[str], path: Path, title: str = "Confusion matrix") -> None:
    """The confusion matrix as an image: rows are true classes, columns predicted ones."""
    plt = _pyplot()
    size = max(4.0, 0.5 * len(names) + 2)
    figure, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax, fraction=0.046)
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(
                j, i, str(value), ha="center", va="center", fontsize=8, color="white" if value > peak / 2 else "black"
            )
    figure.tight_layout()
    save_figure(plt, figure, path)
