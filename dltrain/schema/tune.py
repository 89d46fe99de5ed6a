"""`tune:` what `dltrain tune` optimises, and over which keys (its behaviour is in `dltrain.tune`)."""

from __future__ import annotations

import builtins
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .._params import Params


class Distribution(Params):
    """One searched key: exactly one of `loguniform`, `uniform`, `int` ([low, high]) or `choice` ([values])."""

    loguniform: tuple[float, float] | None = Field(None, description="[low, high], sampled on a log scale (low > 0).")
    uniform: tuple[float, float] | None = Field(None, description="[low, high], sampled uniformly.")
    int: tuple[builtins.int, builtins.int] | None = Field(
        None, description="[low, high], integers."
    )  # `int` names the key: builtins.int is the type
    choice: Annotated[list[Any], Field(min_length=1)] | None = Field(None, description="The values to choose from.")
    step: Annotated[float, Field(gt=0)] | None = Field(None, description="For int and uniform: the grid spacing.")

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        kinds = [k for k in ("loguniform", "uniform", "int", "choice") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of loguniform: [low, high], uniform: [low, high], int: [low, high] "
                f"or choice: [values]; received {', '.join(kinds) or 'none'}"
            )
        low_high = getattr(self, kinds[0]) if kinds[0] != "choice" else None
        if low_high is not None and not low_high[0] < low_high[1]:
            raise ValueError(f"expected low < high; received [{low_high[0]}, {low_high[1]}]")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform needs low > 0; received {self.loguniform[0]}")
        if self.step is not None and kinds[0] not in ("int", "uniform"):
            raise ValueError("step applies to int and uniform only")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("loguniform", "uniform", "int", "choice") if getattr(self, k) is not None)

    def probes(self) -> list[Any]:
        """The values that must each be valid for the key: both ends of a range, or every choice."""
        return list(self.choice) if self.choice is not None else list(getattr(self, self.kind))

    def suggest(self, trial: Any, key: str) -> Any:
        """Draw this key's value for an Optuna trial."""
        if self.choice is not None:
            return trial.suggest_categorical(key, self.choice)
        if self.int is not None:
            return trial.suggest_int(key, *self.int, step=int(self.step or 1))
        if self.loguniform is not None:
            return trial.suggest_float(key, *self.loguniform, log=True)
        return trial.suggest_float(key, *self.uniform, step=self.step)  # type: ignore[misc]


class TuneConfig(Params):
    """`tune:` what `dltrain tune` optimises, and over which keys."""

    metric: str = Field(
        "val_loss", description="a column of the epoch row (history.csv); a trial's value is its last epoch's"
    )
    direction: Literal["auto", "maximize", "minimize"] = Field(
        "auto", description="auto: maximize for accuracy-like metrics"
    )
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="stops trials behind the others, per epoch"
    )
    warmup_epochs: Annotated[int, Field(ge=0)] = Field(
        2, description="median: epochs a trial runs before it may be pruned"
    )
    startup_trials: Annotated[int, Field(ge=1)] = Field(
        5, description="trials sampled at random before TPE and pruning start"
    )
    space: Annotated[dict[str, Distribution], Field(min_length=1)] = Field(description="config key → distribution")
