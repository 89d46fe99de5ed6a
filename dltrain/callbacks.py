"""Callbacks (`fit.callbacks`): Keras's names and keys, as hooks at the end of each epoch.

The trainer calls, per epoch: `on_epoch_end` (every process: read the row, decide),
then, after writing last.pt, `write` (main process with a run directory: this epoch's
files); and `on_fit_end` once. A callback stops training by setting
`trainer.stop_training`, as in Keras. Nothing here runs per step. Each callback's
state goes into the checkpoint, so a resumed run keeps its patience counters.

best.pt is written by a ModelCheckpoint: the user's, when one writes `best.pt`, else a
built-in one watching `val_loss` (or `loss` without validation data).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import torch
from pydantic import Field, NonNegativeFloat, NonNegativeInt, field_validator

from . import custom
from ._params import Params
from ._registry import Registry
from .errors import ConfigError, UserError
from .monitor import Mode, Monitor, PlateauKeys
from .rundir import RunDir, write_csv

if TYPE_CHECKING:
    from .config import LoadedConfig
    from .trainer import Trainer

CALLBACKS: Registry[type["Callback"]] = Registry("callback", case_sensitive=False)


def register_callback(params: type[Params]):  # type: ignore[no-untyped-def]
    """Register a Callback class under the name in its params' `type` literal."""
    return CALLBACKS.register_params(params)


class Callback:
    """Base: every hook does nothing."""

    def __init__(self, params: Any, default_monitor: str) -> None:
        self.params = params
        key = getattr(params, "monitor", None) or default_monitor
        self.monitor = Monitor(key, params.mode, params.min_delta) if hasattr(params, "mode") else None

    def on_epoch_end(self, trainer: "Trainer", row: dict[str, Any]) -> None:
        """The epoch's row is complete (every process)."""

    def write(self, trainer: "Trainer", run: RunDir) -> None:
        """Write this epoch's files (main process, after last.pt)."""

    def on_fit_end(self, trainer: "Trainer") -> None:
        """Training ended (finished, or stopped by a callback)."""

    def state(self) -> dict[str, Any]:
        return {"monitor": self.monitor.state() if self.monitor else None}

    def load_state(self, state: dict[str, Any]) -> None:
        if self.monitor and state.get("monitor"):
            self.monitor.load_state(state["monitor"])


class EarlyStoppingParams(Params):
    type: Literal["EarlyStopping"]
    monitor: str | None = None  # default: val_loss, or loss without validation data
    patience: NonNegativeInt = 0
    mode: Mode = "auto"
    min_delta: NonNegativeFloat = 0.0
    restore_best_weights: bool = False


@register_callback(EarlyStoppingParams)
class EarlyStopping(Callback):
    """Stop when `monitor` has not improved for `patience` epochs; optionally restore the best weights."""

    def __init__(self, params: EarlyStoppingParams, default_monitor: str) -> None:
        super().__init__(params, default_monitor)
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer, row):  # type: ignore[no-untyped-def]
        assert self.monitor is not None
        if self.monitor.update(row):
            if self.params.restore_best_weights:
                self.best_weights = {k: v.detach().clone() for k, v in trainer.network.state_dict().items()}
        elif self.monitor.wait >= self.params.patience:
            trainer.stop_training = True
            trainer.reporter.message(
                f"EarlyStopping: {self.monitor.key} has not improved for {self.monitor.wait} epoch(s) "
                f"(best {self.monitor.best:.4g} at epoch {self.monitor.best_epoch}); stopping after epoch {row['epoch']}"
            )

    def on_fit_end(self, trainer):  # type: ignore[no-untyped-def]
        if self.best_weights is not None:
            trainer.network.load_state_dict(self.best_weights)
            trainer.reporter.message(f"EarlyStopping: restored the weights of epoch {self.monitor.best_epoch}")  # type: ignore[union-attr]

    def state(self):  # type: ignore[no-untyped-def]
        weights = {k: v.cpu() for k, v in self.best_weights.items()} if self.best_weights is not None else None
        return {**super().state(), "best_weights": weights}

    def load_state(self, state):  # type: ignore[no-untyped-def]
        super().load_state(state)
        self.best_weights = state.get("best_weights")


class ModelCheckpointParams(Params):
    type: Literal["ModelCheckpoint"]
    monitor: str | None = None  # default: val_loss, or loss without validation data
    mode: Mode = "auto"
    save_best_only: bool = True
    filename: str = "best.pt"  # in the run directory; may hold {epoch}, e.g. epoch-{epoch:03d}.pt
    min_delta: NonNegativeFloat = 0.0

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


@register_callback(ModelCheckpointParams)
class ModelCheckpoint(Callback):
    """Write a checkpoint when `monitor` improves (or every epoch, with save_best_only: false)."""

    def __init__(self, params: ModelCheckpointParams, default_monitor: str) -> None:
        super().__init__(params, default_monitor)
        self.improved = False

    def on_epoch_end(self, trainer, row):  # type: ignore[no-untyped-def]
        self.improved = self.monitor.update(row)  # type: ignore[union-attr]

    def write(self, trainer, run):  # type: ignore[no-untyped-def]
        if self.improved or not self.params.save_best_only:
            run.save_checkpoint(self.params.filename.format(epoch=trainer.epoch), trainer.state())


class ReduceLROnPlateauParams(PlateauKeys):
    type: Literal["ReduceLROnPlateau"]


@register_callback(ReduceLROnPlateauParams)
class ReduceLROnPlateau(Callback):
    """Multiply the lr by `factor` when `monitor` has not improved for `patience` epochs."""

    def __init__(self, params: PlateauKeys, default_monitor: str) -> None:
        super().__init__(params, default_monitor)
        self.cooldown = 0

    def on_epoch_end(self, trainer, row):  # type: ignore[no-untyped-def]
        monitor, p = self.monitor, self.params
        assert monitor is not None
        improved = monitor.update(row)
        if self.cooldown > 0:
            self.cooldown -= 1
            monitor.wait = 0
        elif not improved and monitor.wait >= p.patience:
            old, new = trainer.lr.reduce(p.factor, p.min_lr)
            if new < old:
                trainer.reporter.message(f"ReduceLROnPlateau: {monitor.key} has not improved for {monitor.wait} "
                                         f"epoch(s); lr {old:.3g} → {new:.3g}")
            self.cooldown, monitor.wait = p.cooldown, 0

    def state(self):  # type: ignore[no-untyped-def]
        return {**super().state(), "cooldown": self.cooldown}

    def load_state(self, state):  # type: ignore[no-untyped-def]
        super().load_state(state)
        self.cooldown = state.get("cooldown", 0)


class CsvLoggerParams(Params):
    type: Literal["CSVLogger"]
    filename: str  # relative to the run directory (or absolute)
    separator: Annotated[str, Field(min_length=1, max_length=1)] = ","


@register_callback(CsvLoggerParams)
class CSVLogger(Callback):
    """Write the history (one row per epoch) to `filename` with `separator` (history.csv is always written)."""

    def write(self, trainer, run):  # type: ignore[no-untyped-def]
        write_csv(run.path / self.params.filename, trainer.history, self.params.separator)


class TensorBoardParams(Params):
    type: Literal["TensorBoard"]
    log_dir: str = "tensorboard"  # relative to the run directory (or absolute)


@register_callback(TensorBoardParams)
class TensorBoard(Callback):
    """Log every number of the epoch row as a TensorBoard scalar (needs `pip install tensorboard`)."""

    def __init__(self, params: TensorBoardParams, default_monitor: str) -> None:
        super().__init__(params, default_monitor)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("the TensorBoard callback needs the tensorboard package: "
                            "pip install 'dltrain[tensorboard]' (or pip install tensorboard)") from None
        self.writer_class = SummaryWriter
        self.writer: Any = None

    def write(self, trainer, run):  # type: ignore[no-untyped-def]
        if self.writer is None:
            self.writer = self.writer_class(log_dir=str(run.path / self.params.log_dir))
        row = trainer.history[-1]
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, global_step=row["epoch"])
        self.writer.flush()

    def on_fit_end(self, trainer):  # type: ignore[no-untyped-def]
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def build_callbacks(loaded: "LoadedConfig", keys: list[str], default_monitor: str) -> tuple[list[Callback], ModelCheckpoint]:
    """The configured callbacks (plus a `reduce_on_plateau` schedule's), and the one writing best.pt.

    Every monitored key is checked against the row's columns (`keys`) before training.
    """
    config = loaded.config
    located: list[tuple[tuple[Any, ...], Any]] = [(("fit", "callbacks", i), p) for i, p in enumerate(config.fit.callbacks)]
    schedule = config.compile.lr_schedule
    if schedule is not None and schedule.type == "reduce_on_plateau":
        located.append((("compile", "lr_schedule"), schedule))
    callbacks: list[Callback] = []
    problems = []
    for path, params in located:
        try:
            found = custom.resolve(params.type, "callback", Params) if path[0] == "fit" else None
            if found is not None:
                callback = custom.callback(found, params, default_monitor)
            else:
                cls = ReduceLROnPlateau if path[0] == "compile" else CALLBACKS.get(params.type).obj
                callback = cls(params, default_monitor)
        except UserError as exc:
            problems += loaded.error(path + ("type",), str(exc)).problems
            continue
        if callback.monitor is not None and callback.monitor.key not in keys:
            problems += loaded.error(path + ("monitor",), f"'{callback.monitor.key}' is not a column of the epoch "
                                     f"row; choose one of: {', '.join(keys)}").problems
        callbacks.append(callback)
    if problems:
        raise ConfigError(problems, loaded.source)
    best = [c for c in callbacks if isinstance(c, ModelCheckpoint) and c.params.filename == "best.pt"]
    if not best:
        best = [ModelCheckpoint(ModelCheckpointParams(type="ModelCheckpoint"), default_monitor)]
        callbacks.append(best[0])
    return callbacks, best[0]
