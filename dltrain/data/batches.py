"""Batches of in-memory data by tensor indexing on the target device.

No DataLoader, no per-sample collate: the split lives on the device, each epoch draws
one permutation (from the run's seed and the epoch number, so a resumed run sees the
same order) and slices it.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

from .base import Split


class TensorBatches:
    """An epoch-by-epoch iterator of `(x, y)` batches over one split.

    Under DDP each rank takes every `world_size`-th index of the epoch's permutation;
    when training, the permutation is padded (by wrapping) so that all ranks run the
    same number of steps.
    """

    def __init__(self, split: Split, batch_size: int, shuffle: bool, seed: int,
                 rank: int = 0, world_size: int = 1, pad: bool = True) -> None:
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        total = len(split)
        self.per_rank = math.ceil(total / world_size) if pad else len(range(rank, total, world_size))

    def __len__(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)

    def indices(self, epoch: int) -> torch.Tensor | None:
        """This rank's sample indices for `epoch` (None: all, in order)."""
        total = len(self.split)
        if not self.shuffle and self.world_size == 1:
            return None
        if self.shuffle:
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
            order = torch.randperm(total, generator=generator)
        else:
            order = torch.arange(total)
        if self.world_size > 1:
            wanted = self.per_rank * self.world_size
            if wanted > total:
                order = torch.cat([order, order[: wanted - total]])
            order = order[self.rank :: self.world_size][: self.per_rank]
        return order.to(self.split.x.device, non_blocking=True)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.indices(epoch)
        x, y, size = self.split.x, self.split.y, self.batch_size
        if order is None:
            for start in range(0, len(self.split), size):
                yield x[start : start + size], y[start : start + size]
            return
        for start in range(0, len(order), size):
            index = order[start : start + size]
            yield x[index], y[index]
