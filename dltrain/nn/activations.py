"""Activations and weight initializers, by their Keras names."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

Shape = tuple[int, ...]

# Keras's leaky_relu slope is 0.2 (PyTorch's is 0.01): ported models keep their behaviour.
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "linear": nn.Identity,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
}


def activation(name: str, shape: Shape) -> nn.Module:
    """The module for activation `name` on outputs of `shape` (batch axis excluded).

    Softmax acts on the feature axis: the last one, or the channel axis of `[C, H, W]`.
    """
    if name == "softmax":
        return nn.Softmax(dim=1 if len(shape) == 3 else -1)
    return _ACTIVATIONS[name]()


def apply_output_activation(name: str | None, outputs: torch.Tensor) -> torch.Tensor:
    """Turn logits into what the user's final activation would have produced."""
    if name == "softmax":
        return outputs.softmax(dim=-1)
    if name == "sigmoid":
        return outputs.sigmoid()
    return outputs


# Keras's truncated normal is cut at two standard deviations; this rescales it so the
# variance is the one asked for (keras.initializers.VarianceScaling).
_TRUNCATION = 0.87962566103423978


def _variance_scaling(scale: float, mode: str, distribution: str) -> Callable[[torch.Tensor], None]:
    def init(tensor: torch.Tensor) -> None:
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(tensor)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        if distribution == "uniform":
            limit = math.sqrt(3.0 * scale / n)
            nn.init.uniform_(tensor, -limit, limit)
        else:
            std = math.sqrt(scale / n) / _TRUNCATION
            nn.init.trunc_normal_(tensor, 0.0, std, -2 * std, 2 * std)

    return init


INITIALIZERS: dict[str, Callable[[torch.Tensor], Any] | None] = {
    "glorot_uniform": _variance_scaling(1.0, "fan_avg", "uniform"),
    "glorot_normal": _variance_scaling(1.0, "fan_avg", "normal"),
    "he_uniform": _variance_scaling(2.0, "fan_in", "uniform"),
    "he_normal": _variance_scaling(2.0, "fan_in", "normal"),
    "lecun_uniform": _variance_scaling(1.0, "fan_in", "uniform"),
    "lecun_normal": _variance_scaling(1.0, "fan_in", "normal"),
    "orthogonal": nn.init.orthogonal_,
    "random_normal": lambda t: nn.init.normal_(t, 0.0, 0.05),
    "random_uniform": lambda t: nn.init.uniform_(t, -0.05, 0.05),
    "zeros": nn.init.zeros_,
    "ones": nn.init.ones_,
    "torch_default": None,
}


@torch.no_grad()
def initialize(tensor: torch.Tensor | None, name: str) -> None:
    """Fill `tensor` in place the way Keras's initializer `name` does."""
    init = INITIALIZERS[name]
    if tensor is not None and init is not None:
        init(tensor)
