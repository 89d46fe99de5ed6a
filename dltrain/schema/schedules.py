"""Learning-rate schedules (`compile.lr_schedule`) and the keys shared with ReduceLROnPlateau.

Implemented in `dltrain.nn.schedules` (the plateau reductions in `dltrain.train.callbacks`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat

from .._params import Params
from .._registry import Registry

SCHEDULES: Registry[Any] = Registry("lr schedule", case_sensitive=False, implemented_in=("dltrain.nn.schedules",))
schedule = SCHEDULES.describes()

Mode = Literal["auto", "min", "max"]
MONITOR = "The epoch-row column to watch (e.g. val_accuracy); default: val_loss, or loss without validation data."
MODE = "min or max: whether the value improves by falling or rising; auto: max for accuracy-like metrics."
Gamma = Annotated[float, Field(gt=0.0, le=1.0, description="The factor the lr is multiplied by.")]


class PlateauKeys(Params):
    """Keys of ReduceLROnPlateau, shared by the callback and the `reduce_on_plateau` schedule."""

    monitor: str | None = Field(None, description=MONITOR)
    factor: Annotated[float, Field(gt=0.0, lt=1.0, description="Multiply the lr by this on a plateau.")] = 0.1
    patience: NonNegativeInt = Field(10, description="Epochs without improvement before the lr is reduced.")
    mode: Mode = Field("auto", description=MODE)
    min_delta: NonNegativeFloat = Field(1e-4, description="The smallest change that counts as an improvement.")
    cooldown: NonNegativeInt = Field(0, description="Epochs to wait after a reduction before watching again.")
    min_lr: NonNegativeFloat = Field(0.0, description="The lr is never reduced below this.")


class ScheduleParams(Params):
    """Keys every schedule accepts."""

    warmup_epochs: NonNegativeFloat = Field(
        0.0,
        description="Ramp the lr linearly from 0 over this many epochs "
        "(fractions allowed); the schedule starts after it.",
    )


@schedule
class StepParams(ScheduleParams):
    """Multiply the lr by `gamma` every `step_size` epochs."""

    type: Literal["step"]
    step_size: PositiveFloat = Field(10.0, description="Epochs between reductions.")
    gamma: Gamma = 0.1


@schedule
class ExponentialParams(ScheduleParams):
    """Multiply the lr by `gamma` per epoch, continuously (`gamma ** t`)."""

    type: Literal["exponential"]
    gamma: Gamma = 0.95


@schedule
class CosineParams(ScheduleParams):
    """Cosine decay from the lr to `alpha` x lr over the epochs (Keras's CosineDecay)."""

    type: Literal["cosine"]
    alpha: Annotated[float, Field(ge=0.0, le=1.0, description="The final lr as a fraction of the lr.")] = 0.0


@schedule
class OneCycleParams(ScheduleParams):
    """One cycle: lr/div_factor up to lr over `pct_start` of the run, then down to far below."""

    type: Literal["onecycle"]
    pct_start: Annotated[float, Field(gt=0.0, lt=1.0, description="Fraction of the run spent rising.")] = 0.3
    div_factor: Annotated[float, Field(ge=1.0, description="The starting lr is lr / div_factor.")] = 25.0
    final_div_factor: Annotated[
        float, Field(ge=1.0, description="The final lr is the starting lr / final_div_factor.")
    ] = 1e4


@schedule
class PlateauScheduleParams(ScheduleParams, PlateauKeys):
    """Divide the lr by 1/`factor` when `monitor` stops improving for `patience` epochs."""

    type: Literal["reduce_on_plateau"]
