"""Callbacks (`fit.callbacks`): Keras's names and keys. Their behaviour is in `dltrain.train.callbacks`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, field_validator

from .._params import Params
from .._registry import Registry
from .schedules import MODE, MONITOR, Mode, PlateauKeys

CALLBACKS: Registry[Any] = Registry(
    "callback", case_sensitive=False, implemented_in=("dltrain.train.callbacks", "dltrain.tracking")
)
callback = CALLBACKS.describes()

MIN_DELTA = "The smallest change that counts as an improvement."


@callback
class EarlyStoppingParams(Params):
    """Stop when `monitor` has not improved for `patience` epochs; optionally restore the best weights."""

    type: Literal["EarlyStopping"]
    monitor: str | None = Field(None, description=MONITOR)
    patience: NonNegativeInt = Field(0, description="Epochs without improvement before training stops.")
    mode: Mode = Field("auto", description=MODE)
    min_delta: NonNegativeFloat = Field(0.0, description=MIN_DELTA)
    restore_best_weights: bool = Field(False, description="At the end, put back the weights of the best epoch.")


@callback
class ModelCheckpointParams(Params):
    """Write a checkpoint when `monitor` improves (or every epoch, with save_best_only: false)."""

    type: Literal["ModelCheckpoint"]
    monitor: str | None = Field(None, description=MONITOR)
    mode: Mode = Field("auto", description=MODE)
    save_best_only: bool = Field(True, description="Write only when the monitored value improves.")
    filename: str = Field(
        "best.pt", description="File in the run directory; may hold {epoch}, e.g. epoch-{epoch:03d}.pt."
    )
    min_delta: NonNegativeFloat = Field(0.0, description=MIN_DELTA)

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        try:
            name = value.format(epoch=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"filename may hold only {{epoch}} (e.g. epoch-{{epoch:03d}}.pt); {exc}") from None
        if "/" in name or "\\" in name or not name.endswith(".pt") or name == "last.pt":
            raise ValueError("expected a file name ending in .pt inside the run directory, other than last.pt")
        return value


@callback
class ReduceLROnPlateauParams(PlateauKeys):
    """Multiply the lr by `factor` when `monitor` has not improved for `patience` epochs."""

    type: Literal["ReduceLROnPlateau"]


@callback
class CsvLoggerParams(Params):
    """Write the history (one row per epoch) to `filename` with `separator` (history.csv is always written)."""

    type: Literal["CSVLogger"]
    filename: str = Field(description="The CSV file, relative to the run directory (or absolute).")
    separator: Annotated[str, Field(min_length=1, max_length=1, description="The column separator.")] = ","


@callback
class TensorBoardParams(Params):
    """Log every number of the epoch row as a TensorBoard scalar (needs `pip install tensorboard`)."""

    type: Literal["TensorBoard"]
    log_dir: str = Field(
        "tensorboard", description="Where the event files go, relative to the run directory (or absolute)."
    )


@callback
class MLflowParams(Params):
    """Log the config, every epoch row and the run's files to MLflow (`pip install 'dltrain[mlflow]'`)."""

    type: Literal["MLflow"]
    tracking_uri: str | None = Field(
        None, description="default: MLFLOW_TRACKING_URI, else sqlite:///mlruns.db in the working folder"
    )
    experiment: str | None = Field(None, description="default: the config's name")
    log_checkpoints: bool = Field(False, description="also upload last.pt and best.pt as artifacts")


@callback
class WandBParams(Params):
    """Log the config, every epoch row and the run's files to Weights & Biases (`pip install 'dltrain[wandb]'`)."""

    type: Literal["WandB"]
    project: str | None = Field(None, description="default: the config's name")
    entity: str | None = Field(None, description="your W&B team or user (default: the logged-in account's)")
    mode: Literal["online", "offline", "disabled"] = Field(
        "offline", description="offline: files under the run; `wandb sync` uploads them"
    )
    log_checkpoints: bool = Field(False, description="also save last.pt and best.pt with the run")
