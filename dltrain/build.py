"""One setup phase: everything a run needs, built from a validated config.

`fit`, `check`, `evaluate`, `predict`, `export`, the benches and the tests all build
through `build_trainer`, so whatever `fit` would reject before its first step (a
monitor no epoch row has, a precision the device cannot run, an absent device, shapes
that do not fit, a checkpoint that does not fit its config) `check` rejects too, with
the same message. Only training itself (and the run directory) is left to `fit`.
"""

from __future__ import annotations

import random
from contextlib import nullcontext

import numpy as np
import torch

from .config import LoadedConfig
from .data import DataBundle, Preprocessing, load_data
from .nn.backbones import weights_from_checkpoint
from .nn.budget import training_problem
from .nn.losses import loss_spec
from .nn.model import BuiltModel, build_model
from .reporting import Reporter
from .train import transfer
from .train.checkpoint import Checkpoint
from .train.distributed import Context, resolve_device
from .train.trainer import Trainer


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare(loaded: LoadedConfig, preprocessing: Preprocessing | None = None) -> tuple[DataBundle, BuiltModel]:
    """Load the data and build the model for a validated config (the input plan's defaults applied)."""
    config = loaded.config
    task = loss_spec(config.compile.loss).task
    notes = transfer.normalization_default(loaded)
    data = load_data(loaded.config.data, task, config.fit.validation_split, preprocessing, config.fit.validation_mode)
    notes += transfer.image_defaults(loaded, data.input_shape)
    built = build_model(loaded, data.input_shape, data.target_width, data.vocab_size)
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


def build_trainer(
    loaded: LoadedConfig,
    ctx: Context | None = None,
    reporter: Reporter | None = None,
    saved: Checkpoint | None = None,
    resume: bool = False,
    training: bool = False,
) -> Trainer:
    """Data, model, optimizer, callbacks, precision and device for `loaded`; weights from `saved` when given.

    `ctx` defaults to one process on `fit.device`. With `saved`, the data are preprocessed
    with its stored statistics and the backbones take its weights (no weight file is read);
    `resume` restores the optimizer, epoch, history and RNGs too. `training` (fit and check,
    not evaluate, predict or export) refuses a batch too large for the device's memory.
    """
    ctx = ctx or Context(resolve_device(loaded.config.fit.device))
    seed_everything(loaded.config.seed or 0)
    prep = Preprocessing.from_state(saved.preprocessing, saved.tokenizer) if saved is not None else None
    with weights_from_checkpoint() if saved is not None else nullcontext():
        data, built = prepare(loaded, prep)
    if training:
        check_memory(loaded, data, built)
    trainer = Trainer(loaded, data, built, ctx, reporter)
    if training and trainer.speed.graphs.refusal:
        raise loaded.error(("fit", "cuda_graphs"), trainer.speed.graphs.refusal)
    if saved is not None:
        trainer.load_state(saved, resume=resume)
    return trainer
