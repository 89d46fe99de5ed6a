"""`synthetic`: random inputs whose targets are a fixed random function of them.

The function is a small random network drawn from `seed`, so a model can learn it:
useful for examples, smoke tests and benchmarks of any input shape.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field, PositiveInt, model_validator

from .base import DataParams, RawData, register_source


class SyntheticParams(DataParams):
    source: Literal["synthetic"]
    num_samples: PositiveInt = 1000
    shape: Annotated[list[PositiveInt], Field(min_length=1)] = [20]
    num_classes: Annotated[int, Field(ge=2)] | None = None
    regression: bool = False
    outputs: PositiveInt = 1
    noise: Annotated[float, Field(ge=0.0)] = 0.0
    seed: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _one_task(self) -> "SyntheticParams":
        if (self.num_classes is None) == (not self.regression):
            raise ValueError("give either num_classes (classification) or regression: true")
        return self


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
