"""`npy`: inputs and targets in separate .npy files, memory-mapped.

Memory-mapping reads only the pages a split touches, so opening a file larger than
memory costs nothing; the in-memory path still copies the splits it makes, and the
streaming path reads batches from the maps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..schema.data import NpyParams
from .base import RawData, register_source


def open_npy(path: Path, key: str) -> np.ndarray:
    """The array of a .npy file, memory-mapped read-only; a missing or damaged file is an error naming it."""
    if not path.is_file():
        raise DataError(f"data.{key}: no file at '{path}'. Give the path of a .npy file (np.save writes one).")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"data.{key}: '{path}' is not a readable .npy file ({reason}); write it with np.save from an array of numbers"
        ) from None
    if not isinstance(array, np.ndarray) or array.ndim == 0:
        raise DataError(f"data.{key}: '{path}' holds no array of samples; write one with np.save(path, array)")
    return array


def _pair(p: NpyParams, split: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The inputs and targets of `split` ('' for training), both read or neither; their lengths must agree."""
    x_path, y_path = getattr(p, f"x{split}"), getattr(p, f"y{split}")
    if x_path is None:
        return None, None
    x, y = open_npy(x_path, f"x{split}"), open_npy(y_path, f"y{split}")
    if len(x) != len(y):
        raise DataError(
            f"data.x{split} '{x_path}' holds {len(x):,} samples but data.y{split} '{y_path}' holds {len(y):,}: "
            f"they must match"
        )
    return x, y


@register_source(NpyParams)
def npy(p: NpyParams) -> RawData:
    """Arrays from .npy files, memory-mapped: inputs `x`, targets `y` (optional test and validation pairs)."""
    x, y = _pair(p, "")
    x_test, y_test = _pair(p, "_test")
    x_val, y_val = _pair(p, "_val")
    assert x is not None and y is not None
    value_range = 255.0 if x.dtype == np.uint8 else None
    return RawData(x, y, x_test, y_test, value_range=value_range, x_val=x_val, y_val=y_val)
