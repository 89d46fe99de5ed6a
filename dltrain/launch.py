"""`dltrain fit --devices N`: start N ranks through torchrun's own launcher.

The parent is torchrun's elastic agent (`torch.distributed.run`, in this process): it
starts `python -m dltrain fit ...` once per device on this node, and stops every rank
as soon as one fails, so a failure never hangs. The failing rank prints its own
message; the parent only passes its exit code on.
"""

from __future__ import annotations

import logging
import os

import torch

from .errors import ReportedElsewhere, RunError, UserError
from .train.distributed import resolve_device


def check_devices(devices: int, device: str) -> None:
    """Refuse, before starting anything, a launch this machine cannot hold."""
    if os.environ.get("WORLD_SIZE"):
        raise UserError(
            "--devices starts its own processes; under torchrun, leave it out "
            "(torchrun's --nproc-per-node says how many)"
        )
    where = resolve_device(device)
    if where.type == "cuda" and devices > torch.cuda.device_count():
        raise UserError(
            f"--devices {devices} asks for one GPU per process, but only {torch.cuda.device_count()} "
            "GPU(s) are visible; lower --devices, or use --device cpu"
        )
    if where.type == "mps":
        raise UserError("--devices needs CUDA GPUs or the CPU (DDP does not run on MPS); use --device cpu")


def launch(devices: int, args: list[str]) -> None:
    """Run `dltrain ARGS` as `devices` ranks of one node; raise with the first failure's exit code."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # The agent's loggers (each with its own level) narrate starts and kills; the ranks
    # already say what went wrong, so keep them quiet.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    options = torchrun.parse_args(["--standalone", f"--nproc-per-node={devices}", "-m", "dltrain", *args])
    try:
        torchrun.run(options)
    except SignalException as exc:  # Ctrl-C reached the ranks too: rank 0 says "interrupted"
        raise ReportedElsewhere(128 + exc.sigval) from None
    except ChildFailedError as exc:
        rank, failure = min(exc.failures.items(), key=lambda item: (item[1].exitcode <= 0, item[1].timestamp))
        if failure.exitcode > 0:
            raise ReportedElsewhere(failure.exitcode) from None
        cause = " (the system's out-of-memory killer sends this)" if failure.signal_name() == "SIGKILL" else ""
        raise RunError(f"rank {rank} was stopped by {failure.signal_name()}{cause} before it could report") from None
