"""Tracking callbacks: `MLflow` and `WandB`, opt-in only (listed in `fit.callbacks`, never auto-detected).

Both log the resolved config as parameters, every epoch row as metrics (step = epoch),
and the run's files at the end; the tracker's run id goes into the checkpoint with the
callback's state, so `dltrain fit --resume` continues the same tracking run. They act
in `write` and `write_final`, which only the main process calls: rank 0 alone logs under DDP.
mlflow and wandb are optional extras, imported when the callback is built; a missing
package is a config error naming the extra to install.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError
from .schema.callbacks import MLflowParams, WandBParams
from .train.callbacks import Callback, register_callback

if TYPE_CHECKING:
    from .train.callbacks import Training
    from .train.rundir import RunDir

RUN_FILES = ("config.yaml", "history.csv", "metrics.json", "curves.png", "train.log")
CHECKPOINTS = ("last.pt", "best.pt")


def _need(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"this callback needs the {extra} package: pip install 'dltrain[{extra}]' (or pip install {extra})"
        ) from None


def config_params(trainer: Training) -> dict[str, str]:
    """The resolved config as flat dotted keys with text values (`model.layers.0.units`: MLflow allows no brackets)."""
    import re

    from .runs import flatten

    return {re.sub(r"\[(\d+)\]", r".\1", key): str(value) for key, value in flatten(trainer.loaded.resolved()).items()}


def numbers(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric entries of a row (or of a nested results dict), keys prefixed."""
    found: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            found.update(numbers(value, f"{prefix}{key}_"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
            found[f"{prefix}{key}"] = float(value)
    return found


def final_numbers(results: dict[str, Any]) -> dict[str, float]:
    """metrics.json's evaluations: `test_*`, and `final_val_*` (the final model, beside the rows' `val_*`)."""
    return {**numbers(results.get("val") or {}, "final_val_"), **numbers(results.get("test") or {}, "test_")}


class TrackingCallback(Callback):
    """Shared by both trackers: one run id kept in the checkpoint, each epoch row logged once."""

    def __init__(self, params: Any, default_monitor: str) -> None:
        self.params = params
        self.monitor = None  # watches nothing (WandB's `mode` is W&B's, not a monitor mode)
        self.run_id: str | None = None
        self.logged_epoch = 0  # the rows up to this epoch are in the tracker (a resumed run logs the rest)
        self.row_epoch = 0  # the latest row: last.pt is saved just before `write` logs it, so it counts as logged
        self.started = False  # this process has opened (or reopened) the tracking run

    def on_epoch_end(self, trainer: Training, row: dict[str, Any]) -> None:
        self.row_epoch = row["epoch"]

    def state(self) -> dict[str, Any]:
        return {**super().state(), "run_id": self.run_id, "logged_epoch": max(self.logged_epoch, self.row_epoch)}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.run_id = state.get("run_id")
        self.logged_epoch = self.row_epoch = state.get("logged_epoch", 0)

    def write(self, trainer: Training, run: RunDir) -> None:
        if not self.started:
            self.start(trainer, run)
            self.started = True
        rows = [row for row in trainer.history if row["epoch"] > self.logged_epoch]
        if rows:
            self.log_rows(rows)
            self.logged_epoch = rows[-1]["epoch"]

    def write_final(self, trainer: Training, run: RunDir, results: dict[str, Any]) -> None:
        if self.started:
            files = [run.path / f for f in RUN_FILES + (CHECKPOINTS if self.params.log_checkpoints else ())]
            self.finish(results, [f for f in files if f.is_file()], trainer.epoch)

    def start(self, trainer: Training, run: RunDir) -> None:
        """Open the tracking run (a new one, or `run_id` when resuming) and log the config."""

    def log_rows(self, rows: list[dict[str, Any]]) -> None:
        """Log these epoch rows."""

    def finish(self, results: dict[str, Any], files: list[Path], epoch: int) -> None:
        """Log the final results and the run's files; close the tracking run."""


@register_callback(MLflowParams)
class MLflow(TrackingCallback):
    """Log the config, every epoch row and the run's files to MLflow (`pip install 'dltrain[mlflow]'`)."""

    def __init__(self, params: MLflowParams, default_monitor: str) -> None:
        super().__init__(params, default_monitor)
        _need("mlflow", "mlflow")
        self.client: Any = None

    def start(self, trainer, run):  # type: ignore[no-untyped-def]
        from mlflow.tracking import MlflowClient

        uri = (
            self.params.tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{Path('mlruns.db').resolve()}"
        )
        self.client = MlflowClient(tracking_uri=uri)
        if self.run_id is None:
            name = self.params.experiment or trainer.loaded.config.name or "dltrain"
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
            created = self.client.create_run(
                experiment_id, run_name=run.path.name, tags={"dltrain.run_dir": str(run.path.resolve())}
            )
            self.run_id = created.info.run_id
        else:
            self.client.update_run(self.run_id, status="RUNNING")
        self._log_params(config_params(trainer))

    def _log_params(self, params: dict[str, str]) -> None:
        """Log the keys MLflow does not hold yet (a resume may change fit.epochs; MLflow keeps params fixed)."""
        from mlflow.entities import Param

        held = self.client.get_run(self.run_id).data.params
        new = [Param(k, v[:6000]) for k, v in params.items() if k not in held]
        for start in range(0, len(new), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=new[start : start + 100])
        changed = {f"resumed.{k}": v[:5000] for k, v in params.items() if k in held and held[k] != v}
        for key, value in changed.items():
            self.client.set_tag(self.run_id, key, value)

    def _log_metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, stamp, step) for k, v in values.items()])

    def log_rows(self, rows):  # type: ignore[no-untyped-def]
        for row in rows:
            self._log_metrics(numbers(row), row["epoch"])

    def finish(self, results, files, epoch):  # type: ignore[no-untyped-def]
        final = final_numbers(results)
        if final:
            self._log_metrics(final, epoch)
        for file in files:
            self.client.log_artifact(
                self.run_id, str(file), artifact_path="checkpoints" if file.suffix == ".pt" else None
            )
        self.client.set_terminated(self.run_id, "FINISHED")


@register_callback(WandBParams)
class WandB(TrackingCallback):
    """Log the config, every epoch row and the run's files to Weights & Biases (`pip install 'dltrain[wandb]'`).

    `mode: offline` (the default) needs no account; `mode: online` needs `wandb login` or
    WANDB_API_KEY beforehand: dltrain never waits at a login prompt.
    """

    def __init__(self, params: WandBParams, default_monitor: str) -> None:
        super().__init__(params, default_monitor)
        _need("wandb", "wandb")
        if params.mode == "online" and not (os.environ.get("WANDB_API_KEY") or _netrc_has_wandb()):
            raise UserError(
                "mode: online needs a W&B account: run `wandb login` or set WANDB_API_KEY first, "
                "or use mode: offline and upload later with `wandb sync`"
            )
        self.wandb_run: Any = None

    def start(self, trainer, run):  # type: ignore[no-untyped-def]
        import wandb

        self.run_id = self.run_id or uuid.uuid4().hex[:12]
        self.wandb_run = wandb.init(
            project=self.params.project or trainer.loaded.config.name or "dltrain",
            entity=self.params.entity,
            mode=self.params.mode,
            dir=str(run.path),
            id=self.run_id,
            name=run.path.name,
            resume="allow",
            config=config_params(trainer),
            allow_val_change=True,
            settings=wandb.Settings(silent=True),
        )

    def log_rows(self, rows):  # type: ignore[no-untyped-def]
        for row in rows:
            self.wandb_run.log(numbers(row), step=row["epoch"])

    def finish(self, results, files, epoch):  # type: ignore[no-untyped-def]
        for key, value in final_numbers(results).items():
            self.wandb_run.summary[key] = value
        for file in files:
            self.wandb_run.save(str(file), base_path=str(file.parent), policy="now")
        self.wandb_run.finish()
        self.wandb_run = None


def _netrc_has_wandb() -> bool:
    import netrc

    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False
