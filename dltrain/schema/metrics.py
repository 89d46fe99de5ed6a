"""Metrics (`compile.metrics`) by their Keras-style names. Computed in `dltrain.nn.metrics`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from .._params import Params
from .._registry import Registry

METRICS: Registry[Any] = Registry("metric", case_sensitive=False, implemented_in=("dltrain.nn.metrics",))
metric = METRICS.describes()


@metric
class AccuracyParams(Params):
    """Fraction of correct predictions (per label for binary cross-entropy)."""

    type: Literal["accuracy"]


@metric
class MaeParams(Params):
    """Mean absolute error."""

    type: Literal["mae"]


@metric
class MseParams(Params):
    """Mean squared error."""

    type: Literal["mse"]


@metric
class RmseParams(Params):
    """Root mean squared error (shares the squared-error sum with `mse`)."""

    type: Literal["rmse"]


@metric
class R2Params(Params):
    """Coefficient of determination, averaged over outputs (scikit-learn's r2_score)."""

    type: Literal["r2"]


@metric
class TopKParams(Params):
    """Fraction of samples whose class is among the `k` highest scores."""

    type: Literal["top_k_accuracy"]
    k: Annotated[int, Field(ge=1, description="How many of the highest scores may hold the true class.")] = 5


@metric
class PrecisionParams(Params):
    """Precision (macro over classes; of the positive label for binary)."""

    type: Literal["precision"]


@metric
class RecallParams(Params):
    """Recall (macro over classes; of the positive label for binary)."""

    type: Literal["recall"]


@metric
class F1Params(Params):
    """F1 score (macro over classes; of the positive label for binary)."""

    type: Literal["f1"]
