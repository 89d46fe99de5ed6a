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
from .splits import distinct_files
from .streaming import PIECE_BYTES, Piece, stream_raw, streamed


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
    distinct_files({"x": p.x, "x_val": p.x_val, "x_test": p.x_test})
    x, y = open_npy(x_path, f"x{split}"), open_npy(y_path, f"y{split}")
    if len(x) != len(y):
        raise DataError(
            f"data.x{split} '{x_path}' holds {len(x):,} samples but data.y{split} '{y_path}' holds {len(y):,}: "
            f"they must match"
        )
    return x, y


@register_source(NpyParams)
def npy(p: NpyParams) -> RawData:
    """Arrays from .npy files, memory-mapped: inputs `x`, targets `y` (optional test and validation pairs);
    streamed in chunks of rows when larger than `data.memory_limit` (or `data.streaming: true`)."""
    streamed = npy_stream(p)
    if streamed is not None:
        return streamed
    x, y = _pair(p, "")
    x_test, y_test = _pair(p, "_test")
    x_val, y_val = _pair(p, "_val")
    assert x is not None and y is not None
    value_range = 255.0 if x.dtype == np.uint8 else None
    return RawData(x, y, x_test, y_test, value_range=value_range, x_val=x_val, y_val=y_val)


# --- streaming: chunks of rows through a memory map -----------------------------------


class NpyShards:
    """An .npy file of inputs read in chunks of rows through a memory map (unmapped after each chunk)."""

    def __init__(self, x: Path, y: Path) -> None:
        self.x, self.y = str(x), str(y)
        inputs = _memmap(self.x)
        self.sample_shape: tuple[int, ...] = tuple(int(d) for d in inputs.shape[1:])
        rows = int(inputs.shape[0]) if inputs.ndim else 0
        if inputs.dtype.kind not in "biuf":
            raise DataError(f"'{x}' holds {inputs.dtype} {list(inputs.shape)}; give real numbers, samples first")
        if not rows:
            raise DataError(f"'{x}' holds no samples ({list(inputs.shape)}); give at least one")
        self.value_range = 255.0 if inputs.dtype == np.uint8 else None  # as the in-memory path reads it
        step = max(1, PIECE_BYTES // max(1, inputs[:1].nbytes))
        self.pieces = [
            Piece(self.x, i, offset, min(step, rows - offset), offset) for i, offset in enumerate(range(0, rows, step))
        ]
        del inputs

    def read_x(self, piece: Piece, wanted: np.ndarray | None, out: np.ndarray) -> None:
        inputs = _memmap(piece.path)
        first = piece.offset or 0
        out[:] = inputs[first : first + piece.rows] if wanted is None else inputs[first + wanted]

    def read_y(self) -> np.ndarray:
        y = np.array(_memmap(self.y, "y"))
        rows = self.pieces[-1].start + self.pieces[-1].rows
        if len(y) != rows:
            raise DataError(f"'{self.x}' holds {rows:,} samples but '{self.y}' {len(y):,} targets: they must match")
        return y


def _memmap(path: str, key: str = "x") -> np.ndarray:
    return open_npy(Path(path), key)


def npy_stream(params: NpyParams) -> RawData | None:
    """`npy` streamed (its test and validation files too), or None for the in-memory path."""
    shards = streamed(params, lambda: NpyShards(params.x, params.y))
    if shards is False:
        return None
    raw = stream_raw(params, shards)  # type: ignore[arg-type]
    distinct_files({"x": params.x, "x_val": params.x_val, "x_test": params.x_test})
    for split in ("test", "val"):
        x, y = getattr(params, f"x_{split}"), getattr(params, f"y_{split}")
        if x is not None:
            held = stream_raw(params, NpyShards(x, y))
            setattr(raw, f"x_{split}", held.x_train)
            setattr(raw, f"y_{split}", held.y_train)
    return raw
