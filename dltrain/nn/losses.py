"""Losses by their Keras names (described in `dltrain.schema.losses`). Each one knows the task it implies.

Cross-entropies always take logits (the model builder splits a final softmax/sigmoid
off), so training uses PyTorch's fused, numerically stable kernels.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .._params import Params
from ..schema import custom
from ..schema.losses import LOSSES, CategoricalParams, SparseCategoricalParams, Task


@dataclass(frozen=True)
class LossSpec:
    """How to build a loss, the task it implies, and the final activation it absorbs."""

    task: Task
    make: Callable[[Any], nn.Module]
    absorbs: str | None  # the output activation trained as logits ("softmax"/"sigmoid")
    per_token: Callable[[Any], nn.Module] | None = None  # for `[T, V]` outputs, when it differs from `make`


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


class _TokenCrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy per token of a sequence output: `[B, T, V]` logits and `[B, T]` next tokens, taken as
    `[B*T, V]` and `[B*T]` (views, as nanoGPT does: no transposed copy to put the classes on axis 1)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(logits.flatten(0, 1), target.flatten(0, 1))  # (B*T, V), (B*T)


def _cross_entropy(p: CategoricalParams | SparseCategoricalParams) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=p.label_smoothing)


def _token_cross_entropy(p: CategoricalParams | SparseCategoricalParams) -> nn.Module:
    return _TokenCrossEntropy(label_smoothing=p.label_smoothing)


_CROSS_ENTROPY = LossSpec("classification", _cross_entropy, "softmax", _token_cross_entropy)


LOSSES.implement("categorical_crossentropy")(_CROSS_ENTROPY)
LOSSES.implement("sparse_categorical_crossentropy")(_CROSS_ENTROPY)
LOSSES.implement("binary_crossentropy")(LossSpec("binary", lambda p: _SmoothedBCE(p.label_smoothing), "sigmoid"))
LOSSES.implement("mse")(LossSpec("regression", lambda p: nn.MSELoss(), None))
LOSSES.implement("mae")(LossSpec("regression", lambda p: nn.L1Loss(), None))
LOSSES.implement("huber")(LossSpec("regression", lambda p: nn.HuberLoss(delta=p.delta), None))


def build_loss(params: Any, output_shape: Sequence[int]) -> nn.Module:
    """The loss module for outputs of `output_shape` (per sample), chosen once when the trainer is built.

    Cross-entropy on `[C]` outputs is PyTorch's own module (no Python of ours in the step); on
    `[T, V]` outputs (a language model's next-token scores) it flattens the tokens into the batch.
    """
    spec = loss_spec(params)
    make = spec.per_token if spec.per_token is not None and len(output_shape) == 2 else spec.make
    return make(params)


def loss_spec(params: Any) -> LossSpec:
    """The spec of a validated loss config: a params model of `dltrain.schema.losses`, or an import path's."""
    found = custom.resolve(params.type, "loss", Params)
    if found is not None:
        return custom_loss_spec(found)
    spec: LossSpec = LOSSES.get(params.type).obj
    return spec


def custom_loss_spec(found: custom.Custom) -> LossSpec:
    """A custom loss: a class (its instance is called) or a function `fn(outputs, targets, **keys)`.

    Its task comes from a `task` attribute ("classification", "binary" or "regression"; default
    regression), and the output activation it trains as logits from `absorbs` (default none).
    """
    obj: Any = found.obj
    task: Task = getattr(obj, "task", "regression")
    if task not in ("classification", "binary", "regression"):
        raise ValueError(f"'{found.path}'.task must be classification, binary or regression; received {task!r}")

    def make(p: Any) -> nn.Module:
        if inspect.isclass(obj):
            made = obj(**custom.kwargs(found, p))
            return made if isinstance(made, nn.Module) else _Call(made, {})  # type: ignore[arg-type]
        return _Call(obj, custom.kwargs(found, p))

    return LossSpec(task, make, getattr(obj, "absorbs", None))


class _Call(nn.Module):
    """A loss function with its keyword arguments bound, as an nn.Module (what the trainer calls a loss)."""

    def __init__(self, fn: Callable[..., Any], keys: dict[str, Any]) -> None:
        super().__init__()
        self.fn, self.keys = fn, keys

    def forward(self, outputs: Any, targets: Any) -> Any:
        return self.fn(outputs, targets, **self.keys)
