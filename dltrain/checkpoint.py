"""Checkpoints: one file of plain data, written atomically, loaded without unpickling code.

A checkpoint holds everything needed to evaluate, predict or resume without the YAML:
the resolved config, model/optimizer/scheduler state, epoch, RNG states, class names,
preprocessing statistics and history.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__, custom
from ._files import atomic_path
from .errors import CheckpointError

FORMAT = "dltrain-checkpoint-1"


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically: a kill at any moment leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        imports = custom.requirements(payload.get("config"))  # what the config names by import path
        torch.save({"format": FORMAT, "version": __version__, "imports": imports, **payload}, handle)
        handle.flush()
        os.fsync(handle.fileno())


def resolve(path: str | Path, default_name: str = "best.pt") -> Path:
    """A checkpoint file, or `default_name` inside a run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'. Give a .pt file or a run directory (it holds last.pt and best.pt).")
    return path


def load(path: str | Path, default_name: str = "best.pt") -> dict[str, Any]:
    """Load a dltrain checkpoint with `weights_only=True`; refuse anything else clearly."""
    file = resolve(path, default_name)
    if not zipfile.is_zipfile(file):  # torch.save's format is a zip archive
        raise CheckpointError(f"'{file}' is not a readable checkpoint (not a file written by torch.save); "
                              f"give the last.pt or best.pt of a run")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"'{file}' needs more than plain data to load, and dltrain never unpickles arbitrary objects "
            f"({str(exc).splitlines()[0]}). Only checkpoints written by dltrain can be loaded."
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"'{file}' is not a readable checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"'{file}' is not a dltrain checkpoint (written by `dltrain fit`)")
    absent = custom.missing(payload.get("imports") or [])
    if absent is not None:
        raise CheckpointError(f"cannot load '{file}': {absent}")
    payload["path"] = str(file)
    return payload


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, as plain data."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put every RNG back where `rng_state` found it."""
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    kind, keys, pos, has_gauss, np_gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
