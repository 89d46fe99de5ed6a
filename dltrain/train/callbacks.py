"""Callbacks (`fit.callbacks`, described in `dltrain.schema.callbacks`): hooks at the end of each epoch.

The trainer calls, per epoch: `on_epoch_end` (every process: read the row, decide),
then, after writing last.pt, `write` (main process with a run directory: this epoch's
files); and `on_fit_end` once. A callback sees the run through `Training`, a narrow
view (as Keras gives a callback `self.model` and `stop_training`), never the trainer
itself, and stops training by setting `training.stop_training`. Nothing here runs per
step. Each callback's state goes into the checkpoint, so a resumed run keeps its
patience counters.

best.pt is written by a ModelCheckpoint: the user's, when one writes `best.pt`, else a
built-in one watching `val_loss` (or `loss` without validation data).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch
from torch import nn

from .._params import Params
from .._registry import tag_value
from ..errors import ConfigError, Problem, UserError
from ..reporting import Reporter
from ..schema import custom
from ..schema.callbacks import (
    CALLBACKS,
    CsvLoggerParams,
    EarlyStoppingParams,
    ModelCheckpointParams,
    ReduceLROnPlateauParams,
    TensorBoardParams,
)
from ..schema.schedules import PlateauKeys
from .monitor import Monitor
from .rundir import RunDir, write_csv

if TYPE_CHECKING:
    from ..config import LoadedConfig
    from .checkpoint import Checkpoint


class LearningRateControl(Protocol):
    """The lr as a callback may change it."""

    def reduce(self, factor: float, min_lr: float) -> tuple[float, float]:
        """Multiply every group's lr by `factor` (not below `min_lr`); the first group's old and new lr."""
        ...


class Training(Protocol):
    """What a callback may see and touch of the run in progress: read-only, except `stop_training`."""

    stop_training: bool  # set True to end training after this epoch

    @property
    def network(self) -> nn.Module:
        """The model being trained (Keras's `callback.model`)."""
        ...

    @property
    def history(self) -> list[dict[str, Any]]:
        """One row per completed epoch (Keras's `logs`, all of them)."""
        ...

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        ...

    @property
    def lr(self) -> LearningRateControl:
        """The learning rate, to reduce on a plateau."""
        ...

    @property
    def loaded(self) -> LoadedConfig:
        """The run's validated config (`loaded.resolved()` is what config.yaml holds)."""
        ...

    @property
    def reporter(self) -> Reporter:
        """Where messages go (`reporter.message(text)`)."""
        ...

    def state(self) -> Checkpoint:
        """The checkpoint of the run as it is now."""
        ...

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """`network`'s state less the frozen backbone blocks that stay frozen: every tensor that can still change."""
        ...


CallbackClass = type["Callback"]


def register_callback(params: type[Any]) -> Callable[[CallbackClass], CallbackClass]:
    """Attach a Callback class to the name in its params' `type` literal."""
    return CALLBACKS.implement(tag_value(params))


class Callback:
    """Base: every hook does nothing."""

    def __init__(self, params: Any, default_monitor: str) -> None:
        self.params = params
        key = getattr(params, "monitor", None) or default_monitor
        self.monitor = Monitor(key, params.mode, params.min_delta) if hasattr(params, "mode") else None

    def on_epoch_end(self, training: Training, row: dict[str, Any]) -> None:
        """The epoch's row is complete (every process)."""

    def write(self, training: Training, run: RunDir) -> None:
        """Write this epoch's files (main process, after last.pt)."""

    def on_fit_end(self, training: Training) -> None:
        """Training ended (finished, or stopped by a callback)."""

    def write_final(self, training: Training, run: RunDir, results: dict[str, Any]) -> None:
        """metrics.json and curves.png are written (main process with a run directory)."""

    def state(self) -> dict[str, Any]:
        return {"monitor": self.monitor.state() if self.monitor else None}

    def load_state(self, state: dict[str, Any]) -> None:
        if self.monitor and state.get("monitor"):
            self.monitor.load_state(state["monitor"])


@register_callback(EarlyStoppingParams)
class EarlyStopping(Callback):
    """Stop when `monitor` has not improved for `patience` epochs; optionally restore the best weights."""

    def __init__(self, params: EarlyStoppingParams, default_monitor: str) -> None:
        super().__init__(params, default_monitor)
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, training: Training, row: dict[str, Any]) -> None:
        assert self.monitor is not None
        if self.monitor.update(row):
            if self.params.restore_best_weights:
                # not the frozen backbone (it cannot change): a VGG16 would copy 56 MB at each improvement
                self.best_weights = {k: v.detach().clone() for k, v in training.trainable_state().items()}
        elif self.monitor.wait >= self.params.patience:
            training.stop_training = True
            training.reporter.message(
                f"EarlyStopping: {self.monitor.key} has not improved for {self.monitor.wait} epoch(s) "
                f"(best {self.monitor.best:.4g} at epoch {self.monitor.best_epoch}); stopping after epoch {row['epoch']}"
            )

    def on_fit_end(self, training: Training) -> None:
        if self.best_weights is not None and self.monitor is not None:
            training.network.load_state_dict({**training.network.state_dict(), **self.best_weights})
            training.reporter.message(f"EarlyStopping: restored the weights of epoch {self.monitor.best_epoch}")

    def state(self) -> dict[str, Any]:
        weights = {k: v.cpu() for k, v in self.best_weights.items()} if self.best_weights is not None else None
        return {**super().state(), "best_weights": weights}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.best_weights = state.get("best_weights")


@register_callback(ModelCheckpointParams)
class ModelCheckpoint(Callback):
    """Write a checkpoint when `monitor` improves (or every epoch, with save_best_only: false)."""

    def __init__(self, params: ModelCheckpointParams, default_monitor: str) -> None:
        super().__init__(params, default_monitor)
        self.improved = False

    def on_epoch_end(self, training: Training, row: dict[str, Any]) -> None:
        assert self.monitor is not None
        self.improved = self.monitor.update(row)

    def write(self, training: Training, run: RunDir) -> None:
        if self.improved or not self.params.save_best_only:
            run.save_checkpoint(self.params.filename.format(epoch=training.epoch), training.state())


@register_callback(ReduceLROnPlateauParams)
class ReduceLROnPlateau(Callback):
    """Multiply the lr by `factor` when `monitor` has not improved for `patience` epochs."""

    def __init__(self, params: PlateauKeys, default_monitor: str) -> None:
        super().__init__(params, default_monitor)
        self.cooldown = 0

    def on_epoch_end(self, training: Training, row: dict[str, Any]) -> None:
        monitor, p = self.monitor, self.params
        assert monitor is not None
        improved = monitor.update(row)
        if self.cooldown > 0:
            self.cooldown -= 1
            monitor.wait = 0
        elif not improved and monitor.wait >= p.patience:
            old, new = training.lr.reduce(p.factor, p.min_lr)
            if new < old:
                training.reporter.message(
                    f"ReduceLROnPlateau: {monitor.key} has not improved for {monitor.wait} "
                    f"epoch(s); lr {old:.3g} → {new:.3g}"
                )
            self.cooldown, monitor.wait = p.cooldown, 0

    def state(self) -> dict[str, Any]:
        return {**super().state(), "cooldown": self.cooldown}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.cooldown = state.get("cooldown", 0)


@register_callback(CsvLoggerParams)
class CSVLogger(Callback):
    """Write the history (one row per epoch) to `filename` with `separator` (history.csv is always written)."""

    def write(self, training: Training, run: RunDir) -> None:
        write_csv(run.path / self.params.filename, training.history, self.params.separator)


@register_callback(TensorBoardParams)
class TensorBoard(Callback):
    """Log every number of the epoch row as a TensorBoard scalar (needs `pip install tensorboard`)."""

    def __init__(self, params: TensorBoardParams, default_monitor: str) -> None:
        super().__init__(params, default_monitor)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(
                "the TensorBoard callback needs the tensorboard package: "
                "pip install 'dltrain[tensorboard]' (or pip install tensorboard)"
            ) from None
        self.writer_class = SummaryWriter
        self.writer: Any = None

    def write(self, training: Training, run: RunDir) -> None:
        if self.writer is None:
            self.writer = self.writer_class(log_dir=str(run.path / self.params.log_dir))
        row = training.history[-1]
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, global_step=row["epoch"])
        self.writer.flush()

    def on_fit_end(self, training: Training) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def build_callbacks(
    loaded: "LoadedConfig", keys: list[str], default_monitor: str
) -> tuple[list[Callback], ModelCheckpoint]:
    """The configured callbacks (plus a `reduce_on_plateau` schedule's), and the one writing best.pt.

    Every monitored key is checked against the row's columns (`keys`) before training.
    """
    config = loaded.config
    located: list[tuple[tuple[Any, ...], Any]] = [
        (("fit", "callbacks", i), p) for i, p in enumerate(config.fit.callbacks)
    ]
    schedule = config.compile.lr_schedule
    if schedule is not None and schedule.type == "reduce_on_plateau":
        located.append((("compile", "lr_schedule"), schedule))
    callbacks: list[Callback] = []
    problems: list[Problem] = []
    for path, params in located:
        try:
            found = custom.resolve(params.type, "callback", Params) if path[0] == "fit" else None
            if found is not None:
                callback = custom_callback(found, params, default_monitor)
            else:
                cls = ReduceLROnPlateau if path[0] == "compile" else CALLBACKS.get(params.type).obj
                callback = cls(params, default_monitor)
        except UserError as exc:
            problems += loaded.error(path + ("type",), str(exc)).problems
            continue
        if callback.monitor is not None and callback.monitor.key not in keys:
            problems += loaded.error(
                path + ("monitor",),
                f"'{callback.monitor.key}' is not a column of the epoch row; choose one of: {', '.join(keys)}",
            ).problems
        callbacks.append(callback)
    if problems:
        raise ConfigError(problems, loaded.source)
    best = [c for c in callbacks if isinstance(c, ModelCheckpoint) and c.params.filename == "best.pt"]
    if not best:
        best = [ModelCheckpoint(ModelCheckpointParams(type="ModelCheckpoint"), default_monitor)]
        callbacks.append(best[0])
    return callbacks, best[0]


def custom_callback(found: custom.Custom, params: Any, default_monitor: str) -> Callback:
    """A custom callback: a class with any of Keras-like hooks `on_epoch_end(trainer, row)`, `on_fit_end(trainer)`."""
    inner = found.obj(**custom.kwargs(found, params))

    class Hooks(Callback):
        def on_epoch_end(self, trainer, row):  # type: ignore[no-untyped-def]
            if hasattr(inner, "on_epoch_end"):
                inner.on_epoch_end(trainer, row)

        def on_fit_end(self, trainer):  # type: ignore[no-untyped-def]
            if hasattr(inner, "on_fit_end"):
                inner.on_fit_end(trainer)

        def state(self) -> dict[str, Any]:
            return inner.state() if hasattr(inner, "state") else {}

        def load_state(self, state: dict[str, Any]) -> None:
            if hasattr(inner, "load_state"):
                inner.load_state(state)

    hooks = Hooks(params, default_monitor)
    hooks.__class__.__name__ = found.name  # the checkpoint matches saved states by this name
    return hooks
