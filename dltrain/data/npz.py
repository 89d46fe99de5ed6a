"""`npz`: NumPy archives, by default in the layout of Keras's `mnist.npz`.

Optional `x_test`/`y_test` arrays are the test set (else `test_split` draws one), and
optional `x_val`/`y_val` arrays the validation set (as Keras's `validation_data`; else
`fit.validation_split` draws one).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..schema.data import NpzParams
from .base import RawData, register_source


def open_npz(path: Path) -> Any:
    """`data.path` opened as an .npz archive (never unpickling), or one DataError saying why not."""
    if not path.is_file():
        raise DataError(f"data.path: no file at '{path}'. Give the path of an .npz file (relative to where you run).")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"data.path: '{path}' is not a readable .npz file ({exc})") from None


@register_source(NpzParams)
def npz(p: NpzParams) -> RawData:
    """Arrays from an .npz file; uses its test arrays when present, else `test_split`."""
    with open_npz(p.path) as archive:
        keys = list(archive.keys())
        for key in (p.x_key, p.y_key):
            if key not in keys:
                raise DataError(
                    f"'{p.path}' has no array '{key}'; it holds: {', '.join(keys)}. Set data.x_key / data.y_key."
                )
        x, y = read_array(archive, p.x_key, p.path), read_array(archive, p.y_key, p.path)
        x_test, y_test = _pair(archive, keys, p.x_test_key, p.y_test_key, p.path)
        x_val, y_val = _pair(archive, keys, p.x_val_key, p.y_val_key, p.path)
    value_range = 255.0 if x.dtype == np.uint8 else None
    return RawData(x, y, x_test, y_test, value_range=value_range, x_val=x_val, y_val=y_val)


def _pair(archive: Any, keys: list[str], x_key: str, y_key: str, path: Path) -> tuple[Any, Any]:
    """Optional inputs and targets stored together (test or validation): both or neither."""
    if (x_key in keys) != (y_key in keys):
        present, absent = (x_key, y_key) if x_key in keys else (y_key, x_key)
        raise DataError(f"'{path}' has '{present}' but no '{absent}': store both arrays, or neither")
    if x_key not in keys:
        return None, None
    return read_array(archive, x_key, path), read_array(archive, y_key, path)


def read_array(archive: Any, key: str, path: Path) -> np.ndarray:
    """One array of the archive; Python objects (which need unpickling) and damaged members are refused."""
    try:
        return archive[key]
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"'{path}': array '{key}' cannot be read ({reason}); store plain numeric arrays "
            f"(np.savez with numbers, not Python objects)"
        ) from None
