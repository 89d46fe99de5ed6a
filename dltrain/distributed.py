"""Where the run executes: the device, and (for DDP) this process's rank.

The trainer asks this context for `rank`, `world_size`, `is_main`, `device` and
`all_reduce`; the single-process context is trivial, so a distributed run is a
different context, not a second loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else CPU; an absent device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device '{name}' asked for, but PyTorch sees no CUDA GPU here; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device '{name}' asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device '{name}' asked for, but MPS is not available here; use --device cpu")
    return device


@dataclass
class Context:
    """One process's view of the run. The default is a single process."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main process prints and writes files."""
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over all processes (in place); a no-op for one process."""
        return tensor

    def barrier(self) -> None:
        """Wait for every process; a no-op for one process."""
