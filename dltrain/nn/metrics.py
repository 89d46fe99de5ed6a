"""Metrics that accumulate on the device and are read only when displayed.

Each metric keeps sums in device tensors (`update` launches a kernel or two and never
syncs the host); `compute` turns them into a number, once per display refresh and at
the end of an epoch. Sums, not means, so ranks can add theirs up under DDP.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from pydantic import BaseModel

from .._params import Params
from .._registry import tag_value
from ..schema import custom
from ..schema.losses import Task
from ..schema.metrics import (
    METRICS,
    AccuracyParams,
    F1Params,
    MaeParams,
    MseParams,
    PrecisionParams,
    R2Params,
    RecallParams,
    RmseParams,
    TopKParams,
)


class Metric:
    """A metric: the sums it keeps, how to add a batch to them, how to read them."""

    tasks: tuple[Task, ...] = ("classification", "binary", "regression")
    sums: tuple[str, ...] = ()
    greater_is_better = False  # for `mode: auto` in callbacks that monitor it

    def __init__(self, params: Any, task: Task, width: int) -> None:
        self.params = params
        self.task = task
        self.width = width  # classes for classification, outputs per sample otherwise

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of the sum `name` (a scalar unless a metric needs per-class counts)."""
        return ()

    def update(self, sums: dict[str, torch.Tensor], outputs: torch.Tensor, targets: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self, sums: dict[str, torch.Tensor], count: int) -> float:
        raise NotImplementedError


MetricClass = type[Metric]


def register_metric(params: type[BaseModel]) -> Callable[[MetricClass], MetricClass]:
    """Attach a Metric class to the name in its params' `type` literal."""
    return METRICS.implement(tag_value(params))


def predicted_labels(task: Task, outputs: torch.Tensor) -> torch.Tensor:
    """Class indices (classification) or 0/1 decisions (binary) from logits."""
    return outputs.argmax(dim=-1) if task == "classification" else (outputs > 0).to(outputs.dtype)


@register_metric(AccuracyParams)
class Accuracy(Metric):
    """Fraction of correct predictions (per label for binary cross-entropy)."""

    tasks = ("classification", "binary")
    sums = ("correct",)
    greater_is_better = True

    def __init__(self, params: Any, task: Task, width: int) -> None:
        super().__init__(params, task, width)
        # labels per sample: one (classes), one per output (binary), one per token (a language model)
        self.per_sample = 1 if task == "classification" else width

    def update(self, sums: dict[str, torch.Tensor], outputs: torch.Tensor, targets: torch.Tensor) -> None:
        sums["correct"] += (predicted_labels(self.task, outputs) == targets).sum()
        self.per_sample = targets.numel() // max(len(targets), 1)  # from the shape: no device op per step

    def compute(self, sums: dict[str, torch.Tensor], count: int) -> float:
        return sums["correct"].item() / max(count * self.per_sample, 1)


@register_metric(MaeParams)
class MeanAbsoluteError(Metric):
    """Mean absolute error."""

    tasks = ("regression",)
    sums = ("abs_error",)

    def update(self, sums: dict[str, torch.Tensor], outputs: torch.Tensor, targets: torch.Tensor) -> None:
        sums["abs_error"] += (outputs.detach() - targets).abs().sum()

    def compute(self, sums: dict[str, torch.Tensor], count: int) -> float:
        return sums["abs_error"].item() / max(count * self.width, 1)


@register_metric(MseParams)
class MeanSquaredError(Metric):
    """Mean squared error."""

    tasks = ("regression",)
    sums = ("squared_error",)

    def update(self, sums: dict[str, torch.Tensor], outputs: torch.Tensor, targets: torch.Tensor) -> None:
        sums["squared_error"] += (outputs.detach() - targets).square().sum()

    def compute(self, sums: dict[str, torch.Tensor], count: int) -> float:
        return sums["squared_error"].item() / max(count * self.width, 1)


@register_metric(RmseParams)
class RootMeanSquaredError(MeanSquaredError):
    """Root mean squared error (shares the squared-error sum with `mse`)."""

    def compute(self, sums: dict[str, torch.Tensor], count: int) -> float:
        return super().compute(sums, count) ** 0.5


@register_metric(R2Params)
class RSquared(Metric):
    """Coefficient of determination, averaged over outputs (scikit-learn's r2_score)."""

    tasks = ("regression",)
    sums = ("r2_sse", "r2_sum", "r2_sumsq")
    greater_is_better = True

    def shape(self, name: str) -> tuple[int, ...]:
        return (self.width,)

    def update(self, sums: dict[str, torch.Tensor], outputs: torch.Tensor, targets: torch.Tensor) -> None:
        sums["r2_sse"] += (outputs - targets).square().sum(dim=0)
        sums["r2_sum"] += targets.sum(dim=0)
        sums["r2_sumsq"] += targets.square().sum(dim=0)

    def compute(self, sums: dict[str, torch.Tensor], count: int) -> float:
        n = max(count, 1)
        total = sums["r2_sumsq"] - sums["r2_sum"].square() / n  # (width,) sum of squares about the mean
        r2 = torch.where(total > 0, 1 - sums["r2_sse"] / total.clamp_min(1e-300), torch.zeros_like(total))
        return r2.mean().item()


@register_metric(TopKParams)
class TopKAccuracy(Metric):
    """Fraction of samples whose class is among the `k` highest scores."""

    tasks = ("classification",)
    sums = ("top_k_correct",)
    greater_is_better = True

    def update(self, sums: dict[str, torch.Tensor], outputs: torch.Tensor, targets: torch.Tensor) -> None:
        k = min(self.params.k, outputs.shape[-1])
        top = outputs.topk(k, dim=-1).indices  # (B, k)
        sums["top_k_correct"] += (top == targets.unsqueeze(-1)).any(dim=-1).sum()

    def compute(self, sums: dict[str, torch.Tensor], count: int) -> float:
        return sums["top_k_correct"].item() / max(count, 1)


def class_scores(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class precision, recall and F1 from a confusion matrix (rows = true class); 0 where undefined."""
    counts = matrix.double()
    true_pos = counts.diag()
    predicted, actual = counts.sum(dim=0), counts.sum(dim=1)
    zero = torch.zeros_like(true_pos)
    precision = torch.where(predicted > 0, true_pos / predicted.clamp_min(1), zero)
    recall = torch.where(actual > 0, true_pos / actual.clamp_min(1), zero)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12), zero)
    return precision, recall, f1


class ConfusionMetric(Metric):
    """A score read from the confusion matrix, summed on the device.

    Classification: the macro average over classes. Binary: the score of the positive
    label (all labels pooled, for multi-label outputs).
    """

    tasks = ("classification", "binary")
    sums = ("confusion",)
    greater_is_better = True
    score = 0  # index into class_scores: precision, recall, f1

    @property
    def classes(self) -> int:
        return self.width if self.task == "classification" else 2

    def shape(self, name: str) -> tuple[int, ...]:
        return (self.classes * self.classes,)

    def update(self, sums: dict[str, torch.Tensor], outputs: torch.Tensor, targets: torch.Tensor) -> None:
        predicted = predicted_labels(self.task, outputs).long().reshape(-1)
        cells = targets.long().reshape(-1) * self.classes + predicted
        sums["confusion"] += torch.bincount(cells, minlength=self.classes * self.classes)

    def compute(self, sums: dict[str, torch.Tensor], count: int) -> float:
        scores = class_scores(sums["confusion"].view(self.classes, self.classes))[self.score]
        return (scores.mean() if self.task == "classification" else scores[1]).item()


@register_metric(PrecisionParams)
class Precision(ConfusionMetric):
    """Precision (macro over classes; of the positive label for binary)."""

    score = 0


@register_metric(RecallParams)
class Recall(ConfusionMetric):
    """Recall (macro over classes; of the positive label for binary)."""

    score = 1


@register_metric(F1Params)
class F1(ConfusionMetric):
    """F1 score (macro over classes; of the positive label for binary)."""

    score = 2


class Tracker:
    """The loss and metrics of one pass over a split, accumulated on the device.

    Metrics that share sums (mse and rmse; precision, recall and f1) add to them once.
    `lr` is the learning rate to display beside them (set by the trainer; None: not shown).
    """

    def __init__(self, metrics: dict[str, Metric], device: torch.device) -> None:
        self.metrics = metrics
        self.device = device
        updaters: dict[tuple[object, tuple[str, ...]], Metric] = {}
        for metric in metrics.values():
            updaters.setdefault((type(metric).update, metric.sums), metric)
        self.updaters = list(updaters.values())
        self.lr: float | None = None
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {"loss": torch.zeros((), dtype=torch.float64, device=self.device)}
        for metric in self.metrics.values():
            for name in metric.sums:
                if name not in self.sums:
                    self.sums[name] = torch.zeros(metric.shape(name), dtype=torch.float64, device=self.device)
        self.count = 0

    def update(self, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch; no host sync."""
        batch = targets.shape[0]
        self.sums["loss"].add_(loss.detach(), alpha=batch)
        outputs = outputs.detach().float()
        for metric in self.updaters:
            metric.update(self.sums, outputs, targets)
        self.count += batch

    def all_reduce(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Add up every rank's sums and count in one collective (identity in one process)."""
        parts = [*self.sums.values(), torch.tensor(float(self.count), dtype=torch.float64, device=self.device)]
        packed = reduce(torch.cat([part.reshape(-1).to(torch.float64) for part in parts]))
        offset = 0
        for name, value in self.sums.items():
            self.sums[name] = packed[offset : offset + value.numel()].view_as(value).to(value.dtype)
            offset += value.numel()
        self.count = int(packed[offset].item())

    def compute(self) -> dict[str, float]:
        """Read the numbers (one host sync per value)."""
        values = {"loss": self.sums["loss"].item() / max(self.count, 1)}
        for name, metric in self.metrics.items():
            values[name] = metric.compute(self.sums, self.count)
        return values

    def state(self) -> dict[str, Any]:
        """The sums so far, as plain data (a checkpoint taken mid-epoch resumes them)."""
        return {"sums": {k: v.cpu() for k, v in self.sums.items()}, "count": self.count}

    def load_state(self, state: dict[str, Any]) -> None:
        self.sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self.count = state["count"]


def build_metrics(configs: list[Any], task: Task, width: int) -> dict[str, Metric]:
    """Instantiate the configured metrics (validated params models), keyed by their display name."""
    # an import path's column is its last name, as Keras names a metric function's column
    built: dict[str, Metric] = {cfg.type.split(":")[-1]: _metric(cfg, task, width) for cfg in configs}
    return built


def _metric(cfg: Any, task: Task, width: int) -> Metric:
    found = custom.resolve(cfg.type, "metric", Params)
    if found is not None:
        return custom_metric(found, cfg, task, width)
    metric: Metric = METRICS.get(cfg.type).obj(cfg, task, width)
    return metric


def custom_metric(found: custom.Custom, params: Any, task: Task, width: int) -> Metric:
    """A custom metric: `fn(outputs, targets, **keys)` (or a class whose instance is one) giving a batch's mean."""
    fn: Any = found.obj(**custom.kwargs(found, params)) if inspect.isclass(found.obj) else found.obj
    keys = {} if inspect.isclass(found.obj) else custom.kwargs(found, params)

    class MeanOfBatches(Metric):
        sums = ("total",)
        greater_is_better = bool(getattr(found.obj, "greater_is_better", False))

        def update(self, sums, outputs, targets):  # type: ignore[no-untyped-def]
            sums["total"] += fn(outputs.detach(), targets, **keys).detach().double() * outputs.shape[0]

        def compute(self, sums, count):  # type: ignore[no-untyped-def]
            return sums["total"].item() / max(count, 1)

    return MeanOfBatches(params, task, width)
