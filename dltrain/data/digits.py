"""`digits`: scikit-learn's 1,797 real 8x8 handwritten digits, shipped with the package."""

from __future__ import annotations

import numpy as np

from ..schema.data import DigitsParams
from .base import RawData, register_source


@register_source(DigitsParams)
def digits(p: DigitsParams) -> RawData:
    """Handwritten digits 0-9, offline: flat [64], or [1, 8, 8] / [8, 8] rows (values 0-16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32)
    if p.as_image:
        x = x.reshape(-1, 1, 8, 8)
    elif p.as_sequence:
        x = x.reshape(-1, 8, 8)
    return RawData(x, bunch.target.astype(np.int64), class_names=[str(i) for i in range(10)], value_range=16.0)
