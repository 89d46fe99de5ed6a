"""What the CLI shows: model summary, a live progress bar, epoch rows, reports.

The progress bar refreshes at most a few times a second: `step` compares a clock and
returns; only on a refresh does it read the device metrics (one host sync). A report
per batch is what makes other tools' progress bars cost more than the training
(Ludwig #4142, Rich #434).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .metrics import Tracker
from .model import BuiltModel
from .reporting import Reporter, log

REFRESH_SECONDS = 0.25


def summary_table(built: BuiltModel, title: str = "Model") -> Table:
    table = Table(title=title, title_justify="left")
    wired = built.wired  # a graph: show what each layer takes
    table.add_column("#", justify="right")
    if wired:
        table.add_column("Name")
    table.add_column("Layer")
    if wired:
        table.add_column("Inputs")
    table.add_column("Output shape")
    table.add_column("Params", justify="right")
    table.add_column("Trainable", justify="right")
    for row in built.summary:
        named = [row.name, row.type, ", ".join(row.inputs)] if wired else [row.type]
        table.add_row(str(row.index), *(escape(t) for t in named), str(list(row.output_shape)), f"{row.params:,}",
                      f"{row.trainable_params:,}")
    frozen = built.total_params - built.trainable_params
    adapter = built.network.adapter
    steps = f" → {adapter.describe()} → {list(adapter.out_shape)}" if adapter is not None else ""
    table.title = f"{title}  (input {list(built.input_shape)}{steps})"
    table.caption = f"Total params: {built.total_params:,}  Trainable: {built.trainable_params:,}  Frozen: {frozen:,}"
    table.caption_justify = "left"
    return table


def _format(values: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float))


class RichReporter(Reporter):
    """Progress bar per epoch, then one row per epoch."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.last_refresh = 0.0
        self.steps = 0

    def fit_start(self, model: BuiltModel, run_dir: Path | None, device: str, start_epoch: int, epochs: int) -> None:
        self.console.print(summary_table(model))
        where = f" → {run_dir}" if run_dir else ""
        first = f"epoch {start_epoch + 1}" if start_epoch else "the start"
        self.console.print(f"Training on [bold]{device}[/bold] from {first} to epoch {epochs}{where}", soft_wrap=True)
        log.info("training on %s, epochs %d..%d, run %s", device, start_epoch + 1, epochs, run_dir)

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.steps = steps
        if not self.console.is_terminal:  # a log file gets the epoch lines only
            return
        self.progress = Progress(
            TextColumn(f"Epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
            console=self.console, auto_refresh=False, transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=steps, metrics="")
        self.last_refresh = time.monotonic()

    def step(self, step: int, tracker: Tracker) -> None:
        if self.progress is None or self.task is None:
            return
        now = time.monotonic()
        if now - self.last_refresh < REFRESH_SECONDS and step != self.steps:
            return
        self.last_refresh = now
        lr = f"  lr {tracker.lr:.3g}" if tracker.lr is not None else ""
        self.progress.update(self.task, completed=step, metrics=_format(tracker.compute()) + lr)
        self.progress.refresh()

    def abort(self) -> None:
        """Take the progress bar down."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        self.abort()
        values = {k: v for k, v in row.items() if k not in ("epoch", "seconds", "lr")}
        text = f"Epoch {epoch:>3}  {_format(values)}  lr {row['lr']:.3g}  {row['seconds']:.2f}s"
        self.console.print(text, highlight=False, soft_wrap=True)
        log.info(text)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)  # unwrapped: commands stay copyable
        log.info(text)

    def fit_end(self, run_dir: Path | None, results: dict[str, Any]) -> None:
        for split in ("val", "test"):
            if split in results:
                self.console.print(f"Final {split}: {_format(results[split])}", highlight=False)
        if run_dir is not None:
            self.console.print(f"Run directory: {run_dir}", soft_wrap=True)  # one line: a path to copy


def report_table(report: dict[str, Any], class_names: list[str]) -> list[Any]:
    """Renderables for an evaluation report: metrics, confusion matrix, per-class scores."""
    out: list[Any] = []
    metrics = Table(title=f"Evaluation on '{report['split']}' ({report['samples']} samples)", title_justify="left")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for key, value in report.items():
        if isinstance(value, float):
            metrics.add_row(key, f"{value:.4f}")
    out.append(metrics)
    if "confusion_matrix" in report:
        names = list(report["per_class"])
        confusion = Table(title="Confusion matrix (rows: true class, columns: predicted)", title_justify="left")
        confusion.add_column("")
        for name in names:
            confusion.add_column(name, justify="right")
        for name, row in zip(names, report["confusion_matrix"]):
            confusion.add_row(name, *(str(v) for v in row))
        out.append(confusion)
        per_class = Table(title="Per class", title_justify="left")
        for column in ("class", "precision", "recall", "f1", "support"):
            per_class.add_column(column, justify="left" if column == "class" else "right")
        for name, scores in report["per_class"].items():
            per_class.add_row(name, f"{scores['precision']:.4f}", f"{scores['recall']:.4f}", f"{scores['f1']:.4f}",
                              str(scores["support"]))
        out.append(per_class)
    return out


def predictions_table(predictions: list[dict[str, Any]]) -> Table:
    """One row per input: its prediction and, for classification, the most probable classes."""
    table = Table(title="Predictions", title_justify="left")
    table.add_column("input")
    table.add_column("prediction")
    extra = "top_k" if predictions and "top_k" in predictions[0] else "probability" if predictions and "probability" in predictions[0] else None
    if extra:
        table.add_column("top classes" if extra == "top_k" else "probability")
    for row in predictions:
        cells = [str(row["input"]), str(row["prediction"])]
        if extra == "top_k":
            cells.append(", ".join(f"{name} {p:.3f}" for name, p in row["top_k"]))
        elif extra:
            cells.append(str(row[extra]))
        table.add_row(*cells)
    return table
