"""Merge layers: `Add`, `Subtract`, `Multiply`, `Average`, `Maximum`, `Concatenate`.

They take the outputs of several earlier layers (named in `inputs`), so their builders
receive a list of shapes instead of one, and their modules a list of tensors. Keras
requires equal shapes for the element-wise merges and equal shapes except along
`axis` for `Concatenate`; a mismatch is a build-time error naming every input shape.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from ..schema.layers import (
    AddParams,
    AverageParams,
    ConcatenateParams,
    MaximumParams,
    MergeParams,
    MultiplyParams,
    SubtractParams,
)
from .layers import Built, ShapeError, register_layer

__all__ = ["MergeParams"]

Shape = tuple[int, ...]


class _Elementwise(nn.Module):
    """Fold the inputs pairwise with one binary tensor operation (sum, product, maximum)."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op

    def forward(self, xs: List[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            if self.op == "add" or self.op == "average":
                out = out + x
            elif self.op == "multiply":
                out = out * x
            else:
                out = torch.maximum(out, x)
        if self.op == "average":
            out = out / len(xs)
        return out

    def extra_repr(self) -> str:
        return self.op


class _Subtract(nn.Module):
    def forward(self, xs: List[torch.Tensor]) -> torch.Tensor:
        return xs[0] - xs[1]


class _Concatenate(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim  # with the batch axis

    def forward(self, xs: List[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def _shown(shapes: list[Shape]) -> str:
    return ", ".join(str(list(s)) for s in shapes)


def _at_least(shapes: list[Shape], count: int) -> None:
    if len(shapes) < count:
        raise ShapeError(f"merges {count} or more inputs; it was given {len(shapes)}: name them in `inputs: [a, b]`")


def _same_shapes(shapes: list[Shape]) -> Shape:
    _at_least(shapes, 2)
    if any(s != shapes[0] for s in shapes):
        raise ShapeError(f"needs inputs of one shape; received {_shown(shapes)}")
    return shapes[0]


@register_layer(AddParams)
def add(p: AddParams, shapes: list[Shape]) -> Built:
    """Sum of the inputs (a residual connection); equal shapes."""
    return Built(_Elementwise("add"), _same_shapes(shapes), keeps_mask=True)


@register_layer(MultiplyParams)
def multiply(p: MultiplyParams, shapes: list[Shape]) -> Built:
    """Element-wise product of the inputs; equal shapes."""
    return Built(_Elementwise("multiply"), _same_shapes(shapes), keeps_mask=True)


@register_layer(AverageParams)
def average(p: AverageParams, shapes: list[Shape]) -> Built:
    """Element-wise mean of the inputs; equal shapes."""
    return Built(_Elementwise("average"), _same_shapes(shapes), keeps_mask=True)


@register_layer(MaximumParams)
def maximum(p: MaximumParams, shapes: list[Shape]) -> Built:
    """Element-wise maximum of the inputs; equal shapes."""
    return Built(_Elementwise("maximum"), _same_shapes(shapes), keeps_mask=True)


@register_layer(SubtractParams)
def subtract(p: SubtractParams, shapes: list[Shape]) -> Built:
    """The first input minus the second; equal shapes."""
    if len(shapes) != 2:
        raise ShapeError(f"takes exactly 2 inputs (first minus second); it was given {len(shapes)}")
    return Built(_Subtract(), _same_shapes(shapes), keeps_mask=True)


@register_layer(ConcatenateParams)
def concatenate(p: ConcatenateParams, shapes: list[Shape]) -> Built:
    """Join the inputs along `axis`; every other axis must match."""
    _at_least(shapes, 2)
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        raise ShapeError(f"needs inputs of one rank; received {_shown(shapes)}")
    axis = p.axis if p.axis is not None else (0 if rank == 3 else -1)
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is outside inputs of rank {rank} (the batch axis is not counted)")
    axis %= rank
    rest = {s[:axis] + s[axis + 1 :] for s in shapes}
    if len(rest) > 1:
        raise ShapeError(f"needs inputs that agree on every axis but {axis}; received {_shown(shapes)}")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return Built(_Concatenate(axis + 1), tuple(out), keeps_mask=rank == 2 and axis == 1)  # [T, F]: joined features
