"""`synthetic`: random inputs whose targets are a fixed random function of them.

The function is a small random network drawn from `seed`, so a model can learn it:
useful for examples, smoke tests and benchmarks of any input shape.
"""

from __future__ import annotations

import numpy as np

from ..schema.data import SyntheticParams
from .base import RawData, register_source


@register_source(SyntheticParams)
def synthetic(p: SyntheticParams) -> RawData:
    """Seeded random inputs of any `shape`; targets from a fixed random tanh network."""
    rng = np.random.default_rng(p.seed)
    x = rng.standard_normal((p.num_samples, *p.shape), dtype=np.float32)
    flat = x.reshape(p.num_samples, -1)
    hidden = 32
    w1 = rng.standard_normal((flat.shape[1], hidden)).astype(np.float32) / np.sqrt(flat.shape[1])
    width = p.num_classes if p.num_classes is not None else p.outputs
    w2 = rng.standard_normal((hidden, width)).astype(np.float32) / np.sqrt(hidden)
    signal = np.tanh(flat @ w1) @ w2
    signal += p.noise * rng.standard_normal(signal.shape).astype(np.float32)
    if p.num_classes is not None:
        return RawData(x, signal.argmax(axis=1).astype(np.int64), class_names=[str(i) for i in range(width)])
    return RawData(x, signal.astype(np.float32))
