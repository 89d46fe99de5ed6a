"""Memory estimates that refuse absurd sizes before anything is allocated.

`units: 1000000000` would have PyTorch allocate (and initialize) gigabytes, then fail
with a traceback or be killed by the kernel; `batch_size: 1000000` on images would
exhaust memory in the first step. Each layer is first built on the `meta` device
(shapes only, no storage) to count its parameters; the training step is estimated
from the parameters and the layers' output shapes.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

BYTES = 4  # float32
TRAIN_COPIES = 4  # weights, gradients and an optimizer's two moments (Adam)


def memory_of(device: str) -> tuple[int, str]:
    """(bytes, description) of the memory training on `device` has: the GPU's, else this machine's RAM."""
    if device != "cpu" and device != "mps" and torch.cuda.is_available():
        index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        if index < torch.cuda.device_count():
            return torch.cuda.get_device_properties(index).total_memory, f"cuda:{index}"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's RAM"


def gigabytes(count: float) -> str:
    return f"{count / 2**30:,.1f} GB" if count >= 2**30 else f"{count / 2**20:,.0f} MB"


def meta_parameters(build: Callable[[], Any]) -> int | None:
    """Parameters of the module `build()` makes, counted on the meta device; None if it cannot build there.

    The CPU random stream is put back, so the estimate leaves a seeded run unchanged.
    """
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            built = build()
    except Exception:
        return None
    return sum(p.numel() for p in built.module.parameters())


def parameter_problem(count: int, total_before: int) -> str | None:
    """Why `count` more parameters cannot be held on this machine, or None when they can."""
    limit, where = memory_of("cpu")
    need = (count + total_before) * BYTES
    if need <= limit:
        return None
    return (
        f"would hold {count:,} parameters ({gigabytes(count * BYTES)} as float32"
        f"{f', {gigabytes(need)} with the layers before it' if total_before else ''}), more than {where} "
        f"({gigabytes(limit)}); use fewer units (filters, dimensions)"
    )


def training_problem(parameters: int, shapes: list[tuple[int, ...]], batch: int, device: str) -> str | None:
    """Why one training step would not fit in the device's memory, or None when it would."""
    limit, where = memory_of(device)
    weights = parameters * BYTES * TRAIN_COPIES
    activations = (
        batch * sum(_numel(shape) for shape in shapes) * BYTES * 2
    )  # outputs kept for backward, and their gradients
    if weights + activations <= limit:
        return None
    return (
        f"one training step would need about {gigabytes(weights + activations)} ({parameters:,} parameters with "
        f"gradients and optimizer state: {gigabytes(weights)}; the layers' outputs for a batch of {batch:,}: "
        f"{gigabytes(activations)}), more than {where} ({gigabytes(limit)}). Lower fit.batch_size or the "
        f"model's sizes"
    )


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
