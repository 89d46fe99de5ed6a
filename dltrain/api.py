"""The Python API: `fit`, `evaluate`, `predict` and `check`, the library behind those commands.

`fit`, `check` and `evaluate` wire config → data → model → trainer (→ checkpoint);
`predict` rebuilds the model from the checkpoint alone and reads no training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._files import check_output_file
from .build import build_trainer
from .config import LoadedConfig, compose, from_resolved, load_config, with_seed
from .data import Preprocessing
from .data.report import DataReport, data_report
from .errors import CheckpointError, ConfigError, RunError, UserError
from .multi import output_confusions, predict_named
from .nn.backbones import weights_from_checkpoint
from .nn.metrics import METRICS, build_metrics, class_scores
from .nn.model import BuiltModel, build_model
from .predict import predict_files
from .reporting import Reporter, log
from .train import checkpoint
from .train.checkpoint import Checkpoint
from .train.distributed import Context, open_context, resolve_device
from .train.plots import image_formats, write_confusion
from .train.rundir import RunDir
from .train.trainer import Trainer


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
        shown = reporter if ctx.is_main else Reporter()
        trainer, run = _fit_setup(loaded, payload, ctx, shown, run_dir, write)
        if ctx.rank > 0:  # dropout and augmentation must differ per rank; rank 0 keeps the 1-process stream
            torch.manual_seed(int(torch.randint(2**62, ())) + ctx.rank)
        try:
            results = trainer.fit(run)
        except RunError as exc:
            log.error("failed: %s", exc)  # train.log records why the run ended (`dltrain runs` reads it)
            raise
        finally:
            if run is not None:
                run.close()
        return FitResult(ctx.broadcast(run.path if run else None), trainer.history, results)


def fit_config(
    config: str | Path | None, overrides: list[str] | None = None, resume: str | Path | None = None
) -> tuple[LoadedConfig, Checkpoint | None]:
    """The validated config of a fit (and the checkpoint it resumes from, if any)."""
    overrides = list(overrides or [])
    if resume is not None:
        payload = checkpoint.load(resume, "last.pt")
        loaded = _stored_config(payload, overrides)
        loaded.sources = payload.config_sources  # the files of the run's first start
        stored = _stored_config(payload).resolved()  # with keys added since it was written
        if loaded.resolved()["model"] != stored["model"] or loaded.resolved()["data"] != stored["data"]:
            raise UserError("--resume cannot change model or data; only fit and compile settings (e.g. fit.epochs)")
        _check_unfinished(payload, loaded.config.fit.epochs)
        return loaded, payload
    if config is not None:
        return with_seed(load_config(config, overrides)), None
    raise UserError("give a config file, or --resume RUN_DIR")


def _check_unfinished(payload: Checkpoint, epochs: int) -> None:
    """Refuse to resume a run that has nothing left to do (it would rewrite its files and train nothing)."""
    done = int(payload.epoch)
    if done >= epochs and not payload.partial:
        where = payload.path.parent if payload.path else "the checkpoint"
        raise UserError(
            f"--resume: the run in {where} is finished: it trained {done} of "
            f"fit.epochs={epochs} epochs. To train on, raise the total: --set fit.epochs={done + 10}"
        )


def _stored_config(saved: Checkpoint, overrides: list[str] | None = None) -> LoadedConfig:
    """The config a checkpoint was trained with (and `--set` overrides); a damaged one is a checkpoint error."""
    name = saved.path.name if saved.path else "checkpoint"
    try:
        return from_resolved(saved.config, overrides, source=name)
    except ConfigError as exc:
        if overrides:
            raise
        raise CheckpointError(f"'{saved.path}' holds a config dltrain cannot read: {exc}") from None


def _fit_setup(
    loaded: LoadedConfig,
    payload: Checkpoint | None,
    ctx: Context,
    reporter: Reporter | None,
    run_dir: str | Path | None,
    write: bool,
) -> tuple[Trainer, RunDir | None]:
    """The run directory (on the main process, locked first: a busy one fails fast), data, model, trainer."""
    run = None
    if payload is not None and ctx.is_main and payload.path:
        run = RunDir.open(Path(payload.path).parent)
    elif payload is None and write and ctx.is_main:
        run = RunDir.create(loaded.config.name or "run", run_dir)
    try:
        trainer = build_trainer(loaded, ctx, reporter, payload, resume=True, training=True)
        if run is not None:
            run.write_config(loaded.resolved(), loaded.sources)
            run.start_log()
    except BaseException:
        if run is not None:
            run.close()
        raise
    return trainer, run


def restore(path: str | Path, overrides: list[str] | None = None, device: str = "cpu") -> Trainer:
    """A trainer rebuilt from a checkpoint alone (no YAML), its weights loaded and checked."""
    saved = checkpoint.load(path)
    loaded = _stored_config(saved, overrides)
    return build_trainer(loaded, Context(resolve_device(device)), saved=saved)


def evaluate(
    path: str | Path,
    split: str = "test",
    overrides: list[str] | None = None,
    device: str = "auto",
    plot: str | Path | None = None,
) -> dict[str, Any]:
    """Loss, metrics and (for classification) the confusion matrix and per-class scores.

    Regression reports (each regression output's, with several) always include RMSE, MAE
    and R²; `plot` writes the confusion matrix as an image (classification only).
    """
    if plot is not None:
        check_plot(Path(plot))
    trainer = restore(path, overrides, device)
    task = trainer.data.task
    if plot is not None and not trainer.data.confusion_classes:
        what = "regression" if task == "regression" else "multi-label (several sigmoid outputs)"
        raise UserError(f"--plot draws a confusion matrix, which needs a classification model; this one is {what}")
    if trainer.heads is not None:  # several outputs: each regression output's report, as for one
        heads = trainer.data.heads  # type: ignore[attr-defined]
        trainer.heads.metrics = {
            name: _reported(found, heads[name].task, heads[name].width) for name, found in trainer.heads.metrics.items()
        }
        trainer.metrics = trainer.heads.columns
    else:
        trainer.metrics = _reported(trainer.metrics, task, trainer.data.target_width)
    chosen = trainer.data.split(split)  # a clear error when the data has no such split
    report = trainer.evaluate(trainer.splits[split], confusion=True)  # the copy on the trainer's device
    report["split"] = split
    report["samples"] = len(chosen)
    if trainer.heads is not None:  # several outputs: a confusion matrix per classifying output
        found = output_confusions(trainer, trainer.splits[split])
        report["confusion_matrices"] = {name: matrix for name, (matrix, _) in found.items()}
        report["per_class"] = {name: per_class_scores(matrix, names) for name, (matrix, names) in found.items()}
    if "confusion_matrix" in report:
        report["per_class"] = per_class_scores(report["confusion_matrix"], trainer.data.class_names or [])
        if plot is not None:
            write_confusion(
                report["confusion_matrix"],
                list(report["per_class"]),
                Path(plot),
                f"Confusion matrix ({split}, {report['samples']} samples)",
            )
    return report


REPORTED = ("rmse", "mae", "r2")  # what `evaluate` always reports for a regression output


def _reported(metrics: dict[str, Any], task: str, width: int) -> dict[str, Any]:
    """The configured metrics, and for a regression output RMSE, MAE and R² besides."""
    if task != "regression":
        return metrics
    wanted = [METRICS.get(name).params(type=name) for name in REPORTED]  # type: ignore[misc]
    return {**build_metrics(wanted, "regression", width), **metrics}


def check_plot(path: Path) -> None:
    """`--plot` must name an image file that matplotlib can write, in a folder that can be written."""
    check_output_file(path, "--plot", make_folder=True)
    formats = image_formats()
    if path.suffix.lstrip(".").lower() not in formats:
        raise UserError(
            f"--plot '{path}': cannot draw a '{path.suffix or 'file without extension'}'; "
            f"end the name with one of {', '.join('.' + f for f in formats)}"
        )


def predict(
    path: str | Path, inputs: list[str | Path], top_k: int = 5, device: str = "auto", texts: list[str] | None = None
) -> dict[str, Any]:
    """Predictions for image files, .npy/.npz arrays, CSV rows, .txt files or `texts`, preprocessed exactly as in training."""
    if top_k < 1:
        raise UserError(f"--top-k must be 1 or more; received {top_k}")
    saved = checkpoint.load(path)
    target = resolve_device(device)
    if saved.outputs is not None:  # named inputs or several outputs: one group of columns per output
        return {"predictions": predict_named(saved, [Path(i) for i in inputs], top_k, target, texts)}
    network = restore_network(saved).to(target)
    rows = predict_files(
        network,
        Preprocessing.from_state(saved.preprocessing, saved.tokenizer),
        saved.plan(),
        [Path(i) for i in inputs],
        saved.task,
        saved.class_names or [],
        top_k,
        target,
        texts,
    )
    return {"predictions": rows}


def vocabulary_size(saved: Checkpoint) -> int | None:
    """A text model's vocabulary (the default `input_dim` of its embeddings): its stored tokenizer's."""
    if saved.tokenizer is None:
        return None
    from .data.tokenize import from_json

    return int(from_json(saved.tokenizer).get_vocab_size())


def restore_network(saved: Checkpoint) -> torch.nn.Module:
    """The trained network from a loaded checkpoint alone: no data is read (for predict)."""
    loaded = _stored_config(saved)
    checkpoint.check_consistent(saved)
    with weights_from_checkpoint():
        built = build_model(loaded, tuple(saved.input_shape), saved.target_width, saved.plan(), vocabulary_size(saved))
    built.network.load_state_dict(saved.weights_for(built.network))
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


def annotated_config(config: str | Path, overrides: list[str] | None = None) -> str:
    """The config that would run (bases, `--set`, `${...}` and defaults applied), each value with its origin."""
    composed = compose.load(config, overrides)
    return compose.render(load_config(config, overrides).resolved(), composed)


def check(config: str | Path, overrides: list[str] | None = None) -> tuple[LoadedConfig, BuiltModel]:
    """Everything `fit` builds before its first step (data, model, callbacks, device, precision); no training."""
    loaded, built, _ = check_with_data(config, overrides)
    return loaded, built


def check_with_data(
    config: str | Path, overrides: list[str] | None = None
) -> tuple[LoadedConfig, BuiltModel, DataReport]:
    """`check`, and the report of the data it loaded (rows, class balance, missing values, ranges per split)."""
    loaded = load_config(config, overrides)
    trainer = build_trainer(loaded, training=True)
    trainer.built.notes += trainer.speed.lines()  # on CUDA, what `fit` prints under the summary (none on the CPU)
    return loaded, trainer.built, data_report(trainer.data)
