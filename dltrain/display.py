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

from .nn.metrics import Tracker
from .nn.model import BuiltModel
from .reporting import Reporter, log
from .tables import add_row, data_table

REFRESH_SECONDS = 0.25


def summary_table(built: BuiltModel, title: str = "Model") -> Table:
    frozen = built.total_params - built.trainable_params
    adapter = built.network.adapter
    steps = f" → {adapter.describe()} → {list(adapter.out_shape)}" if adapter is not None else ""
    wired = built.wired  # a graph: show what each layer takes
    columns = ("#", "Name", "Layer", "Inputs") if wired else ("#", "Layer")
    table = data_table(
        f"{title}  (input {list(built.input_shape)}{steps})",
        *columns,
        "Output shape",
        "Params",
        "Trainable",
        right=("#", "Params", "Trainable"),
    )
    for row in built.summary:
        named = [row.name, row.type, ", ".join(row.inputs)] if wired else [row.type]
        add_row(table, row.index, *named, list(row.output_shape), f"{row.params:,}", f"{row.trainable_params:,}")
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
        self.console.print(
            f"Training on [bold]{escape(device)}[/bold] from {first} to epoch {epochs}{escape(where)}", soft_wrap=True
        )
        log.info("training on %s, epochs %d..%d, run %s", device, start_epoch + 1, epochs, run_dir)

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.steps = steps
        if not self.console.is_terminal:  # a log file gets the epoch lines only
            return
        self.progress = Progress(
            TextColumn(f"Epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
            auto_refresh=False,
            transient=True,
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
        self.console.print(escape(text), highlight=False, soft_wrap=True)
        log.info(text)

    def message(self, text: str) -> None:
        self.console.print(escape(text), highlight=False, soft_wrap=True)  # unwrapped: commands stay copyable
        log.info(text)

    def fit_end(self, run_dir: Path | None, results: dict[str, Any]) -> None:
        for split in ("val", "test"):
            if split in results:
                self.console.print(escape(f"Final {split}: {_format(results[split])}"), highlight=False, soft_wrap=True)
        if run_dir is not None:
            self.console.print(
                f"Run directory: {escape(str(run_dir))}", soft_wrap=True, highlight=False
            )  # one line: a path to copy


def report_table(report: dict[str, Any], class_names: list[str]) -> list[Any]:
    """Renderables for an evaluation report: metrics, confusion matrix, per-class scores."""
    out: list[Any] = []
    metrics = data_table(
        f"Evaluation on '{report['split']}' ({report['samples']} samples)", "metric", "value", right=("value",)
    )
    for key, value in report.items():
        if isinstance(value, float):
            add_row(metrics, key, f"{value:.4f}")
    out.append(metrics)
    if "confusion_matrix" in report:
        names = list(report["per_class"])
        confusion = data_table(
            "Confusion matrix (rows: true class, columns: predicted)", "", *names, right=tuple(names)
        )
        for name, row in zip(names, report["confusion_matrix"]):
            add_row(confusion, name, *row)
        out.append(confusion)
        per_class = data_table(
            "Per class", "class", "precision", "recall", "f1", "support", right=("precision", "recall", "f1", "support")
        )
        for name, scores in report["per_class"].items():
            add_row(
                per_class,
                name,
                f"{scores['precision']:.4f}",
                f"{scores['recall']:.4f}",
                f"{scores['f1']:.4f}",
                scores["support"],
            )
        out.append(per_class)
    return out


def predictions_table(predictions: list[dict[str, Any]]) -> Table:
    """One row per input: its prediction and, for classification, the most probable classes."""
    if predictions and "outputs" in predictions[0]:
        return named_predictions_table(predictions)
    extra = (
        "top_k"
        if predictions and "top_k" in predictions[0]
        else "probability"
        if predictions and "probability" in predictions[0]
        else None
    )
    columns = ["input", "prediction"] + (["top classes" if extra == "top_k" else "probability"] if extra else [])
    table = data_table("Predictions", *columns)
    for row in predictions:
        cells = [str(row["input"]), str(row["prediction"])]
        if extra == "top_k":
            cells.append(", ".join(f"{name} {p:.3f}" for name, p in row["top_k"]))
        elif extra:
            cells.append(str(row[extra]))
        add_row(table, *cells)
    return table


def named_predictions_table(predictions: list[dict[str, Any]]) -> Table:
    """A model with named outputs: one column per output, each its prediction and how probable it is."""
    names = list(predictions[0]["outputs"])
    table = data_table("Predictions", "input", *names)
    for row in predictions:
        add_row(table, str(row["input"]), *(_output_cell(row["outputs"][name]) for name in names))
    return table


def _output_cell(group: dict[str, Any]) -> str:
    if "top_k" in group:
        return f"{group['prediction']} ({group['top_k'][0][1]:.3f})"
    if isinstance(group.get("probability"), float):  # a binary output: of its second class
        return f"{group['prediction']} ({group['probability']:.3f})"
    return str(group["prediction"])


def data_tables(report: Any) -> list[Table]:
    """`check`'s data report (a `data.report.DataReport`): one row per split, then the inputs' ranges per split."""
    rows = data_table(
        f"Data  ({report.task}, input {report.input_shape})", "Split", "Rows", "Missing", "Targets", right=("Rows",)
    )
    token_rows = [s for s in report.splits if s.lengths is not None]
    for s in report.splits:
        missing = "not scanned" if s.missing is None else f"{s.missing:,}"
        add_row(rows, s.split, f"{s.rows:,}", missing, _targets_cell(s))
    tables = [rows]
    if token_rows:
        keys = list(token_rows[0].lengths)
        lengths = data_table("Tokens per sample", "Split", *keys, right=tuple(keys))
        for s in token_rows:
            add_row(lengths, s.split, *(f"{s.lengths[k]:g}" for k in keys))
        tables.append(lengths)
    described = [s for s in report.splits if s.features]
    if described:
        ranges = data_table("Input ranges (min … max, mean)", "Feature", *(s.split for s in described))
        for i, feature in enumerate(described[0].features):
            add_row(ranges, feature.name, *(_range(s.features[i]) for s in described))
        if described[0].more_features:
            ranges.caption = f"and {described[0].more_features:,} more features"
            ranges.caption_justify = "left"
        tables.append(ranges)
    return tables


def _targets_cell(split: Any) -> str:
    if split.targets is not None:
        total = sum(split.targets.values()) or 1
        share = {name: f"{name} {count:,} ({100 * count / total:.0f}%)" for name, count in split.targets.items()}
        if len(share) <= 4:
            return ", ".join(share.values())
        low, high = min(split.targets, key=split.targets.get), max(split.targets, key=split.targets.get)
        return f"{len(share)} classes; fewest {share[low]}, most {share[high]}"
    if split.target_range is not None:
        return _range(split.target_range)
    return split.note or ""


def _range(r: Any) -> str:
    return f"{r.min:.4g} … {r.max:.4g}, {r.mean:.4g}"
