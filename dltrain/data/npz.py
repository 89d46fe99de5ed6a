"""`npz`: NumPy archives, by default in the layout of Keras's `mnist.npz`."""

from __future__ import annotations

import zipfile

import numpy as np

from ..errors import DataError
from ..schema.data import NpzParams
from .base import RawData, register_source


@register_source(NpzParams)
def npz(p: NpzParams) -> RawData:
    """Arrays from an .npz file; uses its test arrays when present, else `test_split`."""
    if not p.path.is_file():
        raise DataError(f"data.path: no file at '{p.path}'. Give the path of an .npz file (relative to where you run).")
    try:
        archive = np.load(p.path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"data.path: '{p.path}' is not a readable .npz file ({exc})") from None
    with archive:
        keys = list(archive.keys())
        for key in (p.x_key, p.y_key):
            if key not in keys:
                raise DataError(f"'{p.path}' has no array '{key}'; it holds: {', '.join(keys)}. Set data.x_key / data.y_key.")
        x, y = archive[p.x_key], archive[p.y_key]
        has_test = p.x_test_key in keys and p.y_test_key in keys
        x_test = archive[p.x_test_key] if has_test else None
        y_test = archive[p.y_test_key] if has_test else None
    value_range = 255.0 if x.dtype == np.uint8 else None
    return RawData(x, y, x_test, y_test, value_range=value_range)
