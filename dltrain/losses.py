"""Losses by their Keras names. Each one knows the task it implies.

Cross-entropies always take logits (the model builder splits a final softmax/sigmoid
off), so training uses PyTorch's fused, numerically stable kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable, Literal

import torch
from pydantic import Field
from torch import nn

from . import custom
from ._params import Params
from ._registry import Registry

Task = Literal["classification", "binary", "regression"]


@dataclass(frozen=True)
class LossSpec:
    """How to build a loss, the task it implies, and the final activation it absorbs."""

    task: Task
    make: Callable[[Params], nn.Module]
    absorbs: str | None  # the output activation trained as logits ("softmax"/"sigmoid")


LOSSES: Registry[LossSpec] = Registry("loss", case_sensitive=False)

Smoothing = Annotated[float, Field(ge=0.0, lt=1.0)]


class CategoricalParams(Params):
    type: Literal["categorical_crossentropy"]
    label_smoothing: Smoothing = 0.0


class SparseCategoricalParams(Params):
    type: Literal["sparse_categorical_crossentropy"]
    label_smoothing: Smoothing = 0.0


class BinaryParams(Params):
    type: Literal["binary_crossentropy"]
    label_smoothing: Smoothing = 0.0


class MseParams(Params):
    type: Literal["mse"]


class MaeParams(Params):
    type: Literal["mae"]


class HuberParams(Params):
    type: Literal["huber"]
    delta: Annotated[float, Field(gt=0.0)] = 1.0


class _SmoothedBCE(nn.Module):
    """Binary cross-entropy on logits with Keras's label smoothing toward 0.5."""

    def __init__(self, smoothing: float) -> None:
        super().__init__()
        self.smoothing = smoothing
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.smoothing:
            target = target * (1.0 - self.smoothing) + 0.5 * self.smoothing
        return self.bce(logits, target)


def _cross_entropy(p: CategoricalParams | SparseCategoricalParams) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=p.label_smoothing)


LOSSES.register(
    "categorical_crossentropy", CategoricalParams,
    "cross-entropy over classes; integer or one-hot labels",
)(LossSpec("classification", _cross_entropy, "softmax"))
LOSSES.register(
    "sparse_categorical_crossentropy", SparseCategoricalParams, "cross-entropy over classes; integer labels"
)(LossSpec("classification", _cross_entropy, "softmax"))
LOSSES.register("binary_crossentropy", BinaryParams, "binary (or multi-label) cross-entropy; 0/1 labels")(
    LossSpec("binary", lambda p: _SmoothedBCE(p.label_smoothing), "sigmoid")
)
LOSSES.register("mse", MseParams, "mean squared error")(LossSpec("regression", lambda p: nn.MSELoss(), None))
LOSSES.register("mae", MaeParams, "mean absolute error")(LossSpec("regression", lambda p: nn.L1Loss(), None))
LOSSES.register("huber", HuberParams, "Huber loss (quadratic below delta, linear above)")(
    LossSpec("regression", lambda p: nn.HuberLoss(delta=p.delta), None)
)


def loss_spec(params: Params) -> LossSpec:
    """The spec of a validated loss config (a registered name, or an import path)."""
    found = custom.resolve(params.type, "loss", Params)  # type: ignore[attr-defined]
    if found is not None:
        return custom.loss_spec(found, params)  # type: ignore[no-any-return]
    return LOSSES.get(params.type).obj  # type: ignore[attr-defined]
