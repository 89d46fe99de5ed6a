"""Learning-rate schedules (`compile.lr_schedule`), as pure functions of training progress.

A schedule maps `t`, the epochs completed as a float (2.5 = halfway through the third
epoch), to a factor of each param group's configured lr. Being a function of `t`
alone, it holds no state: a resumed run computes the same rates as an uninterrupted
one. The lr is set before every step, so warmup and cosine are smooth within an epoch.
`reduce_on_plateau` is a constant factor here; its reductions are the ReduceLROnPlateau
callback's (one implementation), applied through `LearningRate.reduce`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..schema.schedules import (
    SCHEDULES,
    CosineParams,
    ExponentialParams,
    OneCycleParams,
    PlateauScheduleParams,
    StepParams,
)

Factor = Callable[[float], float]  # epochs into the schedule -> lr factor


@SCHEDULES.implement("step")
def step(p: StepParams, length: float) -> Factor:
    """Multiply the lr by `gamma` every `step_size` epochs."""
    return lambda t: p.gamma ** math.floor(t / p.step_size + 1e-9)


@SCHEDULES.implement("exponential")
def exponential(p: ExponentialParams, length: float) -> Factor:
    """Multiply the lr by `gamma` per epoch, continuously (`gamma ** t`)."""
    return lambda t: p.gamma**t


def _cosine(start: float, end: float, fraction: float) -> float:
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))


@SCHEDULES.implement("cosine")
def cosine(p: CosineParams, length: float) -> Factor:
    """Cosine decay from the lr to `alpha` x lr over the epochs (Keras's CosineDecay)."""
    return lambda t: _cosine(1.0, p.alpha, t / length)


@SCHEDULES.implement("onecycle")
def onecycle(p: OneCycleParams, length: float) -> Factor:
    """One cycle: lr/div_factor up to lr over `pct_start` of the run, then down to far below."""
    rise = p.pct_start * length
    low, final = 1.0 / p.div_factor, 1.0 / (p.div_factor * p.final_div_factor)
    return lambda t: _cosine(low, 1.0, t / rise) if t < rise else _cosine(1.0, final, (t - rise) / (length - rise))


@SCHEDULES.implement("reduce_on_plateau")
def reduce_on_plateau(p: PlateauScheduleParams, length: float) -> Factor:
    """Divide the lr by 1/`factor` when `monitor` stops improving for `patience` epochs."""
    return lambda t: 1.0


class LearningRate:
    """Sets each param group's lr from the schedule, the warmup and plateau reductions."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: Any, epochs: int) -> None:
        self.optimizer = optimizer  # its param_groups list is replaced when a checkpoint is loaded
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.warmup = getattr(config, "warmup_epochs", 0.0)
        length = max(epochs - self.warmup, 1e-9)
        self.factor: Factor | None = SCHEDULES.get(config.type).obj(config, length) if config else None
        self.per_step = config is not None  # without a schedule the lr changes only between epochs
        self.scale = 1.0  # product of the plateau reductions so far
        self.steps = 1  # steps per epoch; the trainer sets it

    def update(self, epoch: int, step: int) -> float:
        """Set the lr for step `step` (1-based) of epoch `epoch`; return the first group's."""
        t = epoch - 1 + (step - 1) / self.steps
        factor = self.scale
        if self.warmup and t < self.warmup:
            factor *= min((t + 1.0 / self.steps) / self.warmup, 1.0)
        if self.factor is not None:
            factor *= self.factor(max(t - self.warmup, 0.0))
        groups = self.optimizer.param_groups
        for group, base in zip(groups, self.base):
            group["lr"] = base * factor
        return groups[0]["lr"]

    def reduce(self, factor: float, min_lr: float) -> tuple[float, float]:
        """Scale the lr down by `factor` (not below `min_lr`); (old, new) lr of the first group."""
        old = self.base[0] * self.scale
        self.scale = min(self.scale, max(self.scale * factor, min_lr / max(self.base)))
        return old, self.base[0] * self.scale

    def state(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def load_state(self, state: dict[str, Any] | None) -> None:
        if state:
            self.scale = state["scale"]
