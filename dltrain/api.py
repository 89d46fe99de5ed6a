"""The Python API: `fit`, `evaluate`, `predict` and `check`. The CLI only calls these.

Each one wires the same path: config → data → model → trainer → checkpoint.
"""

from __future__ import annotations

import random
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoint, transfer
from .backbones import weights_from_checkpoint
from .budget import training_problem
from .config import LoadedConfig, from_resolved, load_config, with_seed
from .data import DataBundle, Preprocessing, load_data
from .distributed import Context, open_context, resolve_device
from .errors import UserError
from .losses import loss_spec
from .metrics import METRICS, build_metrics, class_scores
from .model import BuiltModel, build_model
from .plots import write_confusion
from .predict import predict_files
from .reporting import Reporter
from .rundir import RunDir
from .trainer import Trainer


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare(loaded: LoadedConfig, preprocessing: Preprocessing | None = None) -> tuple[DataBundle, BuiltModel]:
    """Load the data and build the model for a validated config."""
    config = loaded.config
    task = loss_spec(config.compile.loss).task
    notes = transfer.normalization_default(loaded)
    data = load_data(loaded.config.data, task, config.fit.validation_split, preprocessing, config.fit.validation_mode)
    notes += transfer.image_defaults(loaded, data.input_shape)
    built = build_model(loaded, data.input_shape, data.target_width)
    built.notes += notes + transfer.plan_notes(built.network)
    return data, built


def check_memory(loaded: LoadedConfig, data: DataBundle, built: BuiltModel) -> None:
    """Refuse a batch whose training step cannot fit in the device's memory, before the first step (fit and check)."""
    fit = loaded.config.fit
    adapter = built.network.adapter
    shapes = [row.output_shape for row in built.summary] + ([adapter.out_shape] if adapter is not None else [])
    problem = training_problem(built.total_params, shapes, min(fit.batch_size, len(data.train)), fit.device)
    if problem:
        raise loaded.error(("fit", "batch_size"), problem)


@dataclass
class FitResult:
    run_dir: Path | None
    history: list[dict[str, Any]]
    results: dict[str, Any]


def fit(
    config: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    resume: str | Path | None = None,
    run_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    write: bool = True,
) -> FitResult:
    """Train a model from a YAML file, or continue the run a checkpoint belongs to.

    Under torchrun each process calls this; rank 0 alone reports and writes the run.
    """
    loaded, payload = fit_config(config, overrides, resume)
    with open_context(loaded.config.fit.device, loaded.config.fit.strategy) as ctx:
        # A seed drawn by `with_seed` differs per process; every rank must shuffle alike.
        loaded.config = loaded.config.model_copy(update={"seed": ctx.broadcast(loaded.config.seed)})
        seed_everything(loaded.config.seed or 0)
        shown = reporter if ctx.is_main else Reporter()
        trainer, run = _fit_setup(loaded, payload, ctx, shown, run_dir, write)
        if ctx.rank > 0:  # dropout and augmentation must differ per rank; rank 0 keeps the 1-process stream
            torch.manual_seed(int(torch.randint(2**62, ())) + ctx.rank)
        try:
            results = trainer.fit(run)
        finally:
            if run is not None:
                run.close()
        return FitResult(ctx.broadcast(run.path if run else None), trainer.history, results)


def fit_config(config: str | Path | None, overrides: list[str] | None = None,
               resume: str | Path | None = None) -> tuple[LoadedConfig, dict[str, Any] | None]:
    """The validated config of a fit (and the checkpoint it resumes from, if any)."""
    overrides = list(overrides or [])
    if resume is not None:
        payload = checkpoint.load(resume, "last.pt")
        loaded = from_resolved(payload["config"], overrides, source=Path(payload["path"]).name)
        if loaded.resolved()["model"] != payload["config"]["model"] or loaded.resolved()["data"] != payload["config"]["data"]:
            raise UserError("--resume cannot change model or data; only fit and compile settings (e.g. fit.epochs)")
        _check_unfinished(payload, loaded.config.fit.epochs)
        return loaded, payload
    if config is not None:
        return with_seed(load_config(config, overrides)), None
    raise UserError("give a config file, or --resume RUN_DIR")


def _check_unfinished(payload: dict[str, Any], epochs: int) -> None:
    """Refuse to resume a run that has nothing left to do (it would rewrite its files and train nothing)."""
    done = int(payload["epoch"])
    if done >= epochs and not payload.get("partial"):
        raise UserError(f"--resume: the run in {Path(payload['path']).parent} is finished: it trained {done} of "
                        f"fit.epochs={epochs} epochs. To train on, raise the total: --set fit.epochs={done + 10}")


def _fit_setup(loaded: LoadedConfig, payload: dict[str, Any] | None, ctx: Context, reporter: Reporter | None,
               run_dir: str | Path | None, write: bool) -> tuple[Trainer, RunDir | None]:
    """Data, model, trainer and (on the main process) the run directory."""
    prep = Preprocessing.from_state(payload["preprocessing"]) if payload else None
    with weights_from_checkpoint() if payload else nullcontext():
        data, built = prepare(loaded, prep)
    check_memory(loaded, data, built)
    trainer = Trainer(loaded, data, built, ctx, reporter)
    run = None
    if payload is not None:
        trainer.load_state(payload, resume=True)
        run = RunDir(Path(payload["path"]).parent) if ctx.is_main else None
    elif write and ctx.is_main:
        run = RunDir.create(loaded.config.name or "run", run_dir)
    if run is not None:
        run.write_config(loaded.resolved())
        run.start_log()
    return trainer, run


def restore(path: str | Path, overrides: list[str] | None = None, device: str = "cpu") -> Trainer:
    """A trainer rebuilt from a checkpoint alone (no YAML), its weights loaded."""
    payload = checkpoint.load(path)
    loaded = from_resolved(payload["config"], overrides, source=Path(payload["path"]).name)
    with weights_from_checkpoint():
        data, built = prepare(loaded, Preprocessing.from_state(payload["preprocessing"]))
    trainer = Trainer(loaded, data, built, Context(resolve_device(device)))
    trainer.load_state(payload, resume=False)
    trainer.checkpoint = payload  # type: ignore[attr-defined]
    return trainer


def evaluate(path: str | Path, split: str = "test", overrides: list[str] | None = None,
             device: str = "auto", plot: str | Path | None = None) -> dict[str, Any]:
    """Loss, metrics and (for classification) the confusion matrix and per-class scores.

    Regression reports always include RMSE and R²; `plot` writes the confusion matrix
    as an image (classification only).
    """
    trainer = restore(path, overrides, device)
    task = trainer.data.task
    if plot is not None and not trainer.data.confusion_classes:
        what = "regression" if task == "regression" else "multi-label (several sigmoid outputs)"
        raise UserError(f"--plot draws a confusion matrix, which needs a classification model; this one is {what}")
    if task == "regression":
        wanted = [METRICS.get(name).params(type=name) for name in ("rmse", "r2")]  # type: ignore[misc]
        trainer.metrics = {**build_metrics(wanted, task, trainer.data.target_width), **trainer.metrics}
    chosen = trainer.data.split(split)  # a clear error when the data has no such split
    report = trainer.evaluate(trainer.splits[split], confusion=True)  # the copy on the trainer's device
    report["split"] = split
    report["samples"] = len(chosen)
    if "confusion_matrix" in report:
        report["per_class"] = per_class_scores(report["confusion_matrix"], trainer.data.class_names or [])
        if plot is not None:
            write_confusion(report["confusion_matrix"], list(report["per_class"]), Path(plot),
                            f"Confusion matrix ({split}, {report['samples']} samples)")
    return report


def predict(path: str | Path, inputs: list[str | Path], top_k: int = 5, device: str = "auto") -> dict[str, Any]:
    """Predictions for image files, .npy/.npz arrays or CSV rows, preprocessed exactly as in training."""
    if top_k < 1:
        raise UserError(f"--top-k must be 1 or more; received {top_k}")
    payload = checkpoint.load(path)
    target = resolve_device(device)
    network = restore_network(payload).to(target)
    rows = predict_files(network, Preprocessing.from_state(payload["preprocessing"]), [Path(i) for i in inputs],
                         payload["task"], payload["class_names"] or [], top_k, target)
    return {"predictions": rows}


def restore_network(payload: dict[str, Any]) -> torch.nn.Module:
    """The trained network from a loaded checkpoint alone: no data is read (for predict)."""
    loaded = from_resolved(payload["config"], source=Path(payload["path"]).name)
    with weights_from_checkpoint():
        built = build_model(loaded, tuple(payload["input_shape"]), payload["target_width"])
    built.network.load_state_dict(payload["model"])
    return built.network.eval()


def per_class_scores(matrix: list[list[int]], names: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows = true)."""
    counts = torch.tensor(matrix, dtype=torch.float64)
    precision, recall, f1 = class_scores(counts)
    actual = counts.sum(dim=1)
    return {
        (names[i] if i < len(names) else str(i)): {
            "precision": round(precision[i].item(), 4),
            "recall": round(recall[i].item(), 4),
            "f1": round(f1[i].item(), 4),
            "support": int(actual[i].item()),
        }
        for i in range(len(matrix))
    }


def check(config: str | Path, overrides: list[str] | None = None) -> tuple[LoadedConfig, BuiltModel]:
    """Validate a config and build its model (loading the data for its shape); no training."""
    loaded = load_config(config, overrides)
    seed_everything(loaded.config.seed or 0)
    data, built = prepare(loaded)
    check_memory(loaded, data, built)
    return loaded, built
