"""The CUDA speed-ups a run takes: each decided here, once, and printed in the run summary.

On a GPU the tutorial's models are launch-bound (each step is dozens of tiny kernels), so
what pays is fewer launches: the optimizer's fused kernel, a captured step (CUDA graphs,
`dltrain.train.cuda_graphs`), NHWC convolutions, and a GPU that is never starved by its
input (pinned memory and non-blocking copies; JPEGs decoded on the GPU). Lower precision
is a change of numerics, so bf16 autocast stays `fit.precision: bf16-mixed`, never a
default. On the CPU every choice here is off: CPU training is exactly what it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .cuda_graphs import GRAPH_OPTIMIZERS, GraphPlan, RunFacts, plan

FUSED_OPTIMIZERS = ("adam", "adamw", "sgd")  # torch.optim's fused CUDA kernels: one launch for all parameters


@dataclass(frozen=True)
class Speedups:
    """Which speed-ups this run takes (all False on the CPU)."""

    device: str
    optimizer: str
    fused: bool  # the optimizer's fused CUDA kernel
    channels_last: bool  # convolution weights, and so activations, in NHWC (tensor-core friendly)
    graphs: GraphPlan
    loader: bool  # a DataLoader feeds the steps: pinned memory, non-blocking copies, JPEGs decoded on the GPU

    def optimizer_options(self) -> dict[str, Any]:
        """Keyword arguments for the torch optimizer (none on the CPU)."""
        options: dict[str, Any] = {}
        if self.fused:
            options["fused"] = True
        if self.graphs.enabled and self.optimizer in ("adam", "adamw"):
            options["capturable"] = True  # its step counter stays on the device (SGD has none)
        return options

    def lines(self) -> list[str]:
        """What the run summary says about them (nothing on the CPU)."""
        if self.device != "cuda":
            return []
        parts = [f"fused {self.optimizer} optimizer" if self.fused else f"{self.optimizer} optimizer (no fused kernel)"]
        if self.channels_last:
            parts.append("channels_last convolutions")
        if self.loader:
            parts.append("DataLoader with pinned memory and non-blocking copies, JPEGs decoded on the GPU (nvjpeg)")
        return ["CUDA: " + "; ".join(parts), self.graphs.line()]


def is_convolutional(network: torch.nn.Module) -> bool:
    """Whether the network convolves images (2-D convolutions: what channels_last speeds up)."""
    return any(isinstance(m, torch.nn.Conv2d) for m in network.modules())


def choose(config: Any, device: torch.device, world_size: int, in_memory: bool, network: torch.nn.Module) -> Speedups:
    """The speed-ups for a validated config on `device` (decided before the optimizer is built)."""
    fit, optimizer = config.fit, config.compile.optimizer.type
    cuda = device.type == "cuda"
    facts = RunFacts(
        device=device.type,
        in_memory=in_memory,
        augment=config.data.augment is not None,
        compile_model=fit.compile_model,
        world_size=world_size,
        precision=fit.precision,
        optimizer=optimizer,
    )
    return Speedups(
        device=device.type,
        optimizer=optimizer,
        fused=cuda and optimizer in FUSED_OPTIMIZERS,
        channels_last=cuda and is_convolutional(network),
        graphs=plan(fit.cuda_graphs, facts),
        loader=cuda and not in_memory,
    )


__all__ = ["GRAPH_OPTIMIZERS", "Speedups", "choose", "is_convolutional"]
