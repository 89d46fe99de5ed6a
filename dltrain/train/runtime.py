"""How the network runs: `fit.compile_model` (torch.compile), `fit.deterministic`, `fit.num_threads`.

torch.compile fails in many ways that depend on the machine (no C++ compiler for the
CPU backend, an unsupported GPU, an op it cannot trace), and it fails lazily, at the
first call. So the compiled network is tried once, forward and backward, on one batch
before training; if that fails, training goes on without it and says why.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator

import torch
from torch import nn


def compile_network(network: nn.Module, sample: torch.Tensor, warn: Callable[[str], None]) -> nn.Module:
    """`torch.compile(network)` if it works here on `sample`, else `network` itself (with a warning).

    The trial step leaves no trace: RNG states, buffers (BatchNorm statistics) and
    gradients are put back, so a compiled run draws the same numbers as an eager one.
    """
    buffers = {name: b.detach().clone() for name, b in network.named_buffers()}
    devices = [sample.device] if sample.device.type == "cuda" else []
    try:
        compiled = torch.compile(network)
        with torch.random.fork_rng(devices=devices):
            compiled(sample).float().sum().backward()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        warn(
            f"fit.compile_model: torch.compile does not work here ({type(exc).__name__}: {first}); training without it"
        )
        compiled = network
    finally:
        network.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, buffer in network.named_buffers():
                buffer.copy_(buffers[name])
    return compiled  # type: ignore[return-value]


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Deterministic kernels while training (warning, not failing, on ops that have none)."""
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for reproducible matmuls
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous[2], previous[3]


SMALL_STEP = 10_000_000  # batch x (parameters + layer outputs): below it, one CPU thread is fastest


def cpu_threads(setting: int | str, batch: int, parameters: int, outputs: int) -> int | None:
    """The thread count for CPU training, or None to keep PyTorch's (or OMP_NUM_THREADS's) choice.

    Measured on a 2-core machine (README, "Threads"): a small model's step is too short
    to split, so extra threads add synchronisation, and on a machine busy with other
    work they wait for cores; the tutorial's models train several times faster there
    with one thread.
    """
    if setting != "auto":
        return int(setting)
    if "OMP_NUM_THREADS" in os.environ:  # the user's (or torchrun's) choice
        return None
    return 1 if batch * (parameters + outputs) < SMALL_STEP else None


@contextlib.contextmanager
def thread_count(threads: int | None) -> Iterator[None]:
    """`torch.set_num_threads(threads)` while training, the caller's count restored after (None: unchanged)."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
