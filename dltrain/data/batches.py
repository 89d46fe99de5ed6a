"""Batches of a split: tensor indexing on the device, or a DataLoader for decoded files.

In-memory data takes no DataLoader and no per-sample collate: the split lives on the
device, each epoch draws one permutation (from the run's seed and the epoch number, so a
resumed run sees the same order) and slices it. Files that must be decoded (image
folders) go through a DataLoader with worker processes, pinned memory on CUDA, and the
same per-epoch order. Data larger than memory are streamed (`streaming.StreamBatches`).
All give the trainer an object with `epoch(n, start)` and `len()`.
"""

from __future__ import annotations

import math
import os
from itertools import islice
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader

from .base import Preprocessing, Split
from .streaming import StreamBatches, StreamSplit

Batch = tuple[torch.Tensor, torch.Tensor]
Transform = Callable[[torch.Tensor], torch.Tensor]


class TensorBatches:
    """An epoch-by-epoch iterator of `(x, y)` batches over one split.

    Under DDP each rank takes every `world_size`-th index of the epoch's permutation;
    when training, the permutation is padded (by wrapping) so that all ranks run the
    same number of steps.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        augment: Transform | None = None,
    ) -> None:
        self.split = split
        self.augment = augment
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
        return order

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of `epoch` from step `start + 1` on."""
        batches = islice(self.slices(epoch), start, None)
        if self.augment is None:
            return batches
        return ((self.augment(x), y) for x, y in batches)

    def slices(self, epoch: int) -> Iterator[Batch]:
        order = self.indices(epoch)
        if order is not None:
            order = order.to(self.split.x.device, non_blocking=True)
        x, y, size = self.split.x, self.split.y, self.batch_size
        if order is None:
            for start in range(0, len(self.split), size):
                yield x[start : start + size], y[start : start + size]
            return
        for start in range(0, len(order), size):
            index = order[start : start + size]
            yield x[index], y[index]


class _EpochSampler:
    """The DataLoader's sampler: the indices `TensorBatches.indices` draws for the current epoch."""

    def __init__(self, order: TensorBatches) -> None:
        self.order = order
        self.epoch = 0

    def __iter__(self) -> Iterator[int]:
        indices = self.order.indices(self.epoch)
        return iter(range(len(self.order.split)) if indices is None else indices.tolist())

    def __len__(self) -> int:
        return self.order.per_rank


class LoaderBatches:
    """Batches of a split whose samples are decoded by `split.dataset` in worker processes.

    The order is `TensorBatches.indices` (same seed, epoch and rank sharding), fed to a
    DataLoader as its sampler. Workers return uint8 images; the float conversion,
    preprocessing and augmentation run per batch on the device.
    """

    def __init__(
        self, split: Any, order: TensorBatches, device: torch.device, workers: int, augment: Transform | None = None
    ) -> None:
        split = split.on_device(device)  # on CUDA: file bytes, decoded on the GPU (`images.gpu_decoding`)
        self.split = split
        self.order = order
        self.prep: Preprocessing = split.prep
        self.device = device
        self.augment = augment
        self.sampler = _EpochSampler(order)
        # Its own generator for the workers' base seed, which the DataLoader would otherwise draw from the global
        # RNG (that dropout and augmentation use) each time an epoch starts: a run resumed mid-epoch would draw it
        # once more than the uninterrupted run, and every random number after it would differ.
        self.generator = torch.Generator()
        self.loader = DataLoader(
            split.dataset,
            batch_size=order.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
            generator=self.generator,
            **({"collate_fn": split.collate} if split.collate is not None else {}),
        )

    def __len__(self) -> int:
        return len(self.order)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of `epoch` from step `start + 1` on (the skipped ones are decoded too)."""
        self.sampler.epoch = epoch
        self.generator.manual_seed((self.order.seed * 1_000_003 + epoch) % 2**63)  # the workers' seeds: (seed, epoch)
        for x, y in islice(self.loader, start, None):
            x = self.prep.apply(self.split.decode(x, self.device).float())
            if self.augment is not None:
                x = self.augment(x)
            yield x, y.to(self.device, non_blocking=True)


Batches = TensorBatches | LoaderBatches | StreamBatches


def make_batches(
    split: Any,
    batch_size: int,
    shuffle: bool,
    seed: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    pad: bool = True,
    augment: Transform | None = None,
    workers: int | None = None,
) -> Batches:
    """The batches of `split`: tensor slices when it is in memory, else a DataLoader over its files (or shards)."""
    if isinstance(split, StreamSplit):
        return StreamBatches(split, batch_size, shuffle, seed, device, rank, world_size, pad, workers, augment)
    order = TensorBatches(split, batch_size, shuffle, seed, rank, world_size, pad, augment)
    if isinstance(split, Split):
        return order
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    return LoaderBatches(split, order, device, workers, augment)


def input_batches(split: Any, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """The inputs of `split` in order, `batch_size` at a time, model-ready (decoded and preprocessed for files)."""
    for x, _ in make_batches(split, batch_size, False, 0, device).epoch(0):
        yield x


def first_inputs(split: Any, count: int) -> torch.Tensor:
    """Up to `count` model-ready inputs of `split`, on the CPU."""
    return next(input_batches(split, count, torch.device("cpu"))).cpu()
