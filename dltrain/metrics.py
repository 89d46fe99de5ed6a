"""Metrics that accumulate on the device and are read only when displayed.

Each metric keeps sums in device tensors (`update` launches a kernel or two and never
syncs the host); `compute` turns them into a number, once per display refresh and at
the end of an epoch. Sums, not means, so ranks can add theirs up under DDP.
"""

from __future__ import annotations

from typing import Literal

import torch

from ._params import Params
from ._registry import Registry
from .losses import Task


class Metric:
    """A metric: the sums it keeps, how to add a batch to them, how to read them."""

    tasks: tuple[Task, ...] = ("classification", "binary", "regression")
    sums: tuple[str, ...] = ()

    def __init__(self, params: Params, task: Task, width: int) -> None:
        self.params = params
        self.task = task
        self.width = width  # classes for classification, outputs per sample otherwise

    def update(self, sums: dict[str, torch.Tensor], outputs: torch.Tensor, targets: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self, sums: dict[str, torch.Tensor], count: int) -> float:
        raise NotImplementedError


METRICS: Registry[type[Metric]] = Registry("metric", case_sensitive=False)


def register_metric(params: type[Params]):  # type: ignore[no-untyped-def]
    """Register a Metric class under the name in its params' `type` literal."""
    name = params.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    return METRICS.register(name, params)


def predicted_labels(task: Task, outputs: torch.Tensor) -> torch.Tensor:
    """Class indices (classification) or 0/1 decisions (binary) from logits."""
    return outputs.argmax(dim=-1) if task == "classification" else (outputs > 0).to(outputs.dtype)


class AccuracyParams(Params):
    type: Literal["accuracy"]


@register_metric(AccuracyParams)
class Accuracy(Metric):
    """Fraction of correct predictions (per label for binary cross-entropy)."""

    tasks = ("classification", "binary")
    sums = ("correct",)

    def update(self, sums, outputs, targets):  # type: ignore[no-untyped-def]
        sums["correct"] += (predicted_labels(self.task, outputs) == targets).sum()

    def compute(self, sums, count):  # type: ignore[no-untyped-def]
        per_sample = 1 if self.task == "classification" else self.width
        return sums["correct"].item() / max(count * per_sample, 1)


class MaeParams(Params):
    type: Literal["mae"]


@register_metric(MaeParams)
class MeanAbsoluteError(Metric):
    """Mean absolute error."""

    tasks = ("regression",)
    sums = ("abs_error",)

    def update(self, sums, outputs, targets):  # type: ignore[no-untyped-def]
        sums["abs_error"] += (outputs.detach() - targets).abs().sum()

    def compute(self, sums, count):  # type: ignore[no-untyped-def]
        return sums["abs_error"].item() / max(count * self.width, 1)


class MseParams(Params):
    type: Literal["mse"]


@register_metric(MseParams)
class MeanSquaredError(Metric):
    """Mean squared error."""

    tasks = ("regression",)
    sums = ("squared_error",)

    def update(self, sums, outputs, targets):  # type: ignore[no-untyped-def]
        sums["squared_error"] += (outputs.detach() - targets).square().sum()

    def compute(self, sums, count):  # type: ignore[no-untyped-def]
        return sums["squared_error"].item() / max(count * self.width, 1)


class Tracker:
    """The loss and metrics of one pass over a split, accumulated on the device."""

    def __init__(self, metrics: dict[str, Metric], device: torch.device) -> None:
        self.metrics = metrics
        self.device = device
        self.reset()

    def reset(self) -> None:
        zero = lambda: torch.zeros((), dtype=torch.float64, device=self.device)  # noqa: E731
        self.sums: dict[str, torch.Tensor] = {"loss": zero()}
        for metric in self.metrics.values():
            for name in metric.sums:
                self.sums.setdefault(name, zero())
        self.count = 0

    def update(self, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch; no host sync."""
        batch = targets.shape[0]
        self.sums["loss"].add_(loss.detach(), alpha=batch)
        outputs = outputs.detach().float()
        for metric in self.metrics.values():
            metric.update(self.sums, outputs, targets)
        self.count += batch

    def compute(self) -> dict[str, float]:
        """Read the numbers (one host sync per value)."""
        values = {"loss": self.sums["loss"].item() / max(self.count, 1)}
        for name, metric in self.metrics.items():
            values[name] = metric.compute(self.sums, self.count)
        return values


def build_metrics(configs: list[Params], task: Task, width: int) -> dict[str, Metric]:
    """Instantiate the configured metrics, keyed by their display name."""
    return {cfg.type: METRICS.get(cfg.type).obj(cfg, task, width) for cfg in configs}  # type: ignore[attr-defined]
