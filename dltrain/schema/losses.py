"""Losses (`compile.loss`) by their Keras names; each implies a task. Built in `dltrain.nn.losses`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from .._params import Params
from .._registry import Registry

Task = Literal["classification", "binary", "regression"]

LOSSES: Registry[Any] = Registry("loss", case_sensitive=False, implemented_in=("dltrain.nn.losses",))
loss = LOSSES.describes()

Smoothing = Annotated[
    float, Field(ge=0.0, lt=1.0, description="Keras's label smoothing: targets move this fraction toward uniform.")
]


@loss
class CategoricalParams(Params):
    """cross-entropy over classes; integer or one-hot labels"""

    type: Literal["categorical_crossentropy"]
    label_smoothing: Smoothing = 0.0


@loss
class SparseCategoricalParams(Params):
    """cross-entropy over classes; integer labels"""

    type: Literal["sparse_categorical_crossentropy"]
    label_smoothing: Smoothing = 0.0


@loss
class BinaryParams(Params):
    """binary (or multi-label) cross-entropy; 0/1 labels"""

    type: Literal["binary_crossentropy"]
    label_smoothing: Smoothing = 0.0


@loss
class MseParams(Params):
    """mean squared error"""

    type: Literal["mse"]


@loss
class MaeParams(Params):
    """mean absolute error"""

    type: Literal["mae"]


@loss
class HuberParams(Params):
    """Huber loss (quadratic below delta, linear above)"""

    type: Literal["huber"]
    delta: Annotated[float, Field(gt=0.0, description="Where the loss turns from quadratic to linear.")] = 1.0
