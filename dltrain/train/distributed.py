"""Where the run executes: the device, and (for DDP) this process's rank.

The trainer asks this context for `rank`, `world_size`, `is_main`, `device` and
`all_reduce`; the single-process context is trivial, so a distributed run is a
different context, not a second loop. `open_context` picks one from torchrun's
environment (RANK, LOCAL_RANK, WORLD_SIZE) and always tears the process group down.
"""

from __future__ import annotations

import os
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ContextManager, Iterator, TypeVar

import torch
from torch import nn

from ..errors import DltrainError, ReportedElsewhere, RunError, UserError

T = TypeVar("T")

STORE_SECONDS = 30  # how long a failing rank waits on torchrun's store before reporting anyway


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

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` (any picklable object), on every rank."""
        return value

    def wrap(self, network: nn.Module) -> nn.Module:
        """What the training step calls: the network itself, or its DDP wrapper."""
        return network

    def no_sync(self) -> ContextManager[None]:
        """Skip the gradient all-reduce of a step that only accumulates (a no-op in one process)."""
        return nullcontext()

    def sync_buffers(self, network: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics) before evaluating."""

    def describe(self) -> str:
        """Where training runs, as the progress header shows it."""
        return str(self.device)


@dataclass
class DistributedContext(Context):
    """One rank of a DistributedDataParallel run started by torchrun."""

    local_rank: int = 0
    backend: str = "gloo"
    _wrapped: nn.parallel.DistributedDataParallel | None = field(default=None, repr=False)
    _trainable: list[int] = field(default_factory=list, repr=False)

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        torch.distributed.all_reduce(tensor)
        return tensor

    def broadcast(self, value: T) -> T:
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def no_sync(self) -> ContextManager[None]:
        """DDP's `no_sync` on the wrapper `wrap` built: accumulating steps keep their gradients local."""
        return self._wrapped.no_sync() if self._wrapped is not None else nullcontext()

    def wrap(self, network: nn.Module) -> nn.Module:
        """The DDP wrapper of `network`: built again only when what trains has changed.

        DDP averages the gradients of the parameters that required grad when it was built
        (construction broadcasts rank 0's weights), so a backbone unfrozen later needs a
        new wrapper; every rank unfreezes at the same epoch, so all rebuild together.
        """
        trainable = [id(p) for p in network.parameters() if p.requires_grad]
        if self._wrapped is None or self._wrapped.module is not network or self._trainable != trainable:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._wrapped = nn.parallel.DistributedDataParallel(network, device_ids=device_ids)
            self._trainable = trainable
        return self._wrapped

    def sync_buffers(self, network: nn.Module) -> None:
        # DDP broadcasts buffers at the start of each training forward, so after the
        # last step each rank holds its own update; evaluation must use rank 0's.
        for buffer in network.buffers():
            torch.distributed.broadcast(buffer, src=0)

    def describe(self) -> str:
        return f"{self.device} × {self.world_size} process{'es' if self.world_size > 1 else ''} (DDP, {self.backend})"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise UserError(
            f"environment variable {name} must be an integer (torchrun sets it); received {value!r}"
        ) from None


def ddp_device(name: str, local_rank: int) -> torch.device:
    """One device per process: `cuda:LOCAL_RANK` on GPUs, the CPU otherwise."""
    device = resolve_device(name)
    if device.type == "mps":
        raise UserError("DistributedDataParallel does not run on MPS; use fit.device: cpu or a CUDA machine")
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise UserError(
            f"fit.device: {name} names one GPU, but under DDP each process takes cuda:LOCAL_RANK; "
            "use fit.device: cuda (or auto)"
        )
    if local_rank >= torch.cuda.device_count():
        raise UserError(
            f"LOCAL_RANK {local_rank} needs a GPU of that index, but only {torch.cuda.device_count()} "
            "are visible; start at most that many processes per node"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _describe_failure(exc: BaseException, rank: int) -> str:
    """`rank R failed: Type: message (at file:line in function)`, without a traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"rank {rank} failed: {type(exc).__name__}: {exc}{where}"


@contextmanager
def open_context(device: str, strategy: str = "auto") -> Iterator[Context]:
    """The context this process trains in; under torchrun, a process group torn down on exit.

    An unexpected exception in a rank becomes one line naming the rank (exit code 1),
    printed by the first rank to fail only; torchrun stops the other ranks as soon as
    one exits, so a failure never leaves them waiting.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    # `ddp` under torchrun keeps a world of one distributed (e.g. to check NCCL on one GPU).
    if world_size == 1 and not (strategy == "ddp" and "MASTER_ADDR" in os.environ):
        yield Context(resolve_device(device))
        return
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    try:
        if strategy == "single":
            raise UserError(
                f"fit.strategy: single, but this process is one of {world_size} started by torchrun; "
                "use fit.strategy: ddp (or auto), or start one process"
            )
        where = ddp_device(device, local_rank)
        backend = "nccl" if where.type == "cuda" else "gloo"
        torch.distributed.init_process_group(
            backend,
            rank=rank,
            world_size=world_size,
            timeout=timedelta(minutes=30),
            device_id=where if where.type == "cuda" else None,
        )
        yield DistributedContext(where, rank, world_size, local_rank, backend)
        # Every rank is done before any tears its group down: a gloo rank whose peer has already
        # gone can abort in C++ ("terminate called without an active exception"), seen under load.
        torch.distributed.barrier()
    except KeyboardInterrupt:
        if rank == 0:
            raise
        raise ReportedElsewhere(130) from None  # Ctrl-C reaches every rank; rank 0 says so
    except Exception as exc:
        # Registers the failure before `finally` tears the group down (see _first_to_report).
        failure = exc if isinstance(exc, DltrainError) else RunError(_describe_failure(exc, rank))
        raise _first_to_report(failure) from exc
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _first_to_report(failure: DltrainError) -> DltrainError:
    """`failure` for the first rank to fail; for the rest, a quiet exit with the same code.

    A rank that fails registers in torchrun's store before it tears its process group
    down, so the ranks that then see their collectives break (an echo of that failure,
    not its cause) register later and stay quiet: the user reads one message.
    """
    try:
        store = torch.distributed.PrefixStore(
            f"dltrain/failure/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/",
            torch.distributed.TCPStore(
                os.environ["MASTER_ADDR"],
                int(os.environ["MASTER_PORT"]),
                is_master=False,
                timeout=timedelta(seconds=STORE_SECONDS),
            ),
        )
        if store.add("count", 1) == 1:
            store.set("exit_code", str(failure.exit_code))
            return failure
        return ReportedElsewhere(int(store.get("exit_code")))
    except (KeyError, ValueError, RuntimeError):  # no store to agree through: report it here
        return failure
