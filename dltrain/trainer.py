"""The training loop: one epoch loop, one step loop, read top to bottom.

The hot loop is a plain PyTorch loop: batches are slices of device tensors, metrics
accumulate on the device, and the host reads them only when the display refreshes and
at the end of an epoch.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .config import LoadedConfig
from .data import DataBundle, Split
from .data.augment import build_augment
from .data.batches import Batches, make_batches
from .distributed import Context
from .feature_cache import cache_features
from .losses import loss_spec
from .metrics import Tracker, build_metrics, predicted_labels
from .model import BuiltModel
from .optim import build_optimizer
from .reporting import Reporter
from .rundir import RunDir
from .transfer import param_groups, unfreeze
from . import checkpoint

EVAL_BATCH = 1024  # evaluation holds no graph, so larger batches are free speed


class Trainer:
    """Everything one run needs, built once from a validated config and its data."""

    def __init__(self, loaded: LoadedConfig, data: DataBundle, built: BuiltModel, ctx: Context,
                 reporter: Reporter | None = None) -> None:
        config = loaded.config
        self.loaded = loaded
        self.config = config
        self.data = data
        self.built = built
        self.ctx = ctx
        self.reporter = reporter or Reporter()
        self.network = built.network.to(ctx.device)
        self.forward: torch.nn.Module = self.network  # the head alone when backbone features are cached
        self.splits = {name: split.to(ctx.device) for name, split in
                       (("train", data.train), ("val", data.val), ("test", data.test)) if split is not None}
        self.loss_fn = loss_spec(config.compile.loss).make(config.compile.loss)
        groups = param_groups(self.network, config.compile.optimizer.lr)
        self.optimizer = build_optimizer(groups, config.compile.optimizer)
        self.metrics = build_metrics(config.compile.metrics, data.task, data.target_width)
        self.tracker = Tracker(self.metrics, ctx.device)
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, Any]] = []
        self.best: float | None = None
        self.monitor = "val_loss" if "val" in self.splits else "loss"
        self.augment = build_augment(config.data.augment)
        self.workers: int | None = getattr(config.data, "num_workers", None)  # sources that decode files

    # --- the loop -------------------------------------------------------------------

    def fit(self, run: RunDir | None) -> dict[str, Any]:
        """Train from `self.epoch` to `fit.epochs`, checkpointing every epoch."""
        fit = self.config.fit
        self.reporter.fit_start(self.built, run.path if run else None, str(self.ctx.device), self.epoch, fit.epochs)
        for note in self.built.notes:
            self.reporter.message(note)
        self.forward, self.splits = cache_features(self.network, self.splits, self.config.data, EVAL_BATCH, self.reporter)
        batches = make_batches(self.splits["train"], fit.batch_size, fit.shuffle, self.config.seed or 0, self.ctx.device,
                               self.ctx.rank, self.ctx.world_size, augment=self.augment, workers=self.workers)
        for epoch in range(self.epoch + 1, fit.epochs + 1):
            started = time.perf_counter()
            unfreeze(self.network, epoch, self.reporter)
            self.reporter.epoch_start(epoch, fit.epochs, len(batches))
            row: dict[str, Any] = {"epoch": epoch, **self.train_epoch(batches, epoch)}
            if "val" in self.splits:
                row.update({f"val_{k}": v for k, v in self.evaluate(self.splits["val"]).items()})
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            row["seconds"] = round(time.perf_counter() - started, 4)
            self.epoch = epoch
            self.history.append(row)
            improved = self.best is None or row[self.monitor] < self.best
            if improved:
                self.best = row[self.monitor]
            if run is not None and self.ctx.is_main:
                run.write_history(self.history)
                run.save_checkpoint("last.pt", self.state())
                if improved:
                    run.save_checkpoint("best.pt", self.state())
            self.reporter.epoch_end(epoch, row)
        results = self.final_results()
        if run is not None and self.ctx.is_main:
            run.write_metrics(results)
        self.reporter.fit_end(run.path if run else None, results)
        return results

    def train_epoch(self, batches: Batches, epoch: int) -> dict[str, float]:
        """One pass over the training data; returns the epoch's loss and metrics."""
        network, forward, optimizer, loss_fn, tracker = self.network, self.forward, self.optimizer, self.loss_fn, self.tracker
        network.train()
        tracker.reset()
        for step, (x, y) in enumerate(batches.epoch(epoch), start=1):
            outputs = forward(x)
            loss = loss_fn(outputs, y)
            if network.has_penalty:
                loss = loss + network.penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            tracker.update(loss, outputs, y)
            self.reporter.step(step, tracker)
        return tracker.compute()

    @torch.inference_mode()
    def evaluate(self, split: Split, confusion: bool = False) -> dict[str, Any]:
        """Loss and metrics over `split` (and the confusion matrix, when asked)."""
        self.network.eval()
        tracker = Tracker(self.metrics, self.ctx.device)
        classes = self.data.num_classes or 0
        matrix = torch.zeros(classes * classes, dtype=torch.int64, device=self.ctx.device) if classes else None
        batches = make_batches(split, max(self.config.fit.batch_size, EVAL_BATCH), False, 0, self.ctx.device,
                               self.ctx.rank, self.ctx.world_size, pad=False, workers=self.workers)
        for x, y in batches.epoch(0):
            outputs = self.forward(x)
            tracker.update(self.loss_fn(outputs, y), outputs, y)
            if confusion and matrix is not None:
                predicted = predicted_labels("classification", outputs)
                matrix += torch.bincount(y * classes + predicted, minlength=classes * classes)
        values: dict[str, Any] = tracker.compute()
        if confusion and matrix is not None:
            values["confusion_matrix"] = matrix.view(classes, classes).cpu().tolist()
        return values

    def final_results(self) -> dict[str, Any]:
        """What metrics.json holds: the final model on the validation and test splits."""
        results: dict[str, Any] = {"epochs": self.epoch, "monitor": self.monitor, "best": self.best}
        for name in ("val", "test"):
            if name in self.splits:
                results[name] = self.evaluate(self.splits[name])
        return results

    # --- checkpoint state -----------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The checkpoint payload: plain data only."""
        return {
            "config": self.loaded.resolved(),
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None,
            "epoch": self.epoch,
            "rng": checkpoint.rng_state(),
            "history": self.history,
            "best": self.best,
            "monitor": self.monitor,
            "task": self.data.task,
            "input_shape": list(self.data.input_shape),
            "num_classes": self.data.num_classes,
            "class_names": self.data.class_names,
            "output_activation": self.network.output_activation,
            "preprocessing": self.data.preprocessing.state(),
        }

    def load_state(self, payload: dict[str, Any], resume: bool) -> None:
        """Restore weights (and, to resume, the optimizer, epoch, history and RNGs)."""
        self.network.load_state_dict(payload["model"])
        if resume:
            self.optimizer.load_state_dict(payload["optimizer"])
            self.epoch = payload["epoch"]
            self.history = list(payload["history"])
            self.best = payload["best"]
            checkpoint.restore_rng(payload["rng"])
