"""The training loop: one epoch loop, one step loop, read top to bottom.

The hot loop is a plain PyTorch loop: batches are slices of device tensors, metrics
accumulate on the device, and the host reads them only when the display refreshes and
at the end of an epoch.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, ContextManager

import torch

from ..config import LoadedConfig
from ..data import DataBundle, Split, streaming
from ..data.augment import build_augment
from ..data.batches import Batches, first_inputs, make_batches
from ..errors import CheckpointError
from ..nn.losses import build_loss
from ..nn.metrics import Tracker, build_metrics, predicted_labels
from ..nn.model import BuiltModel
from ..nn.optim import build_optimizer
from ..nn.outputs import build_heads, is_multi
from ..nn.schedules import LearningRate
from ..reporting import Reporter
from ..schema import custom
from . import checkpoint
from .callbacks import build_callbacks
from .cuda_graphs import GraphedStep, graphed_step
from .distributed import Context
from .feature_cache import cache_features
from .plots import write_curves
from .precision import Precision
from .rundir import RunDir
from .runtime import compile_network, cpu_threads, deterministic_mode, thread_count
from .safety import CheckpointClock, NanGuard, StopRequest, tidy_display
from .speedups import choose
from .transfer import backbones, param_groups, unfreeze

EVAL_BATCH = 1024  # evaluation holds no graph, so larger batches are free speed


def _writing(run: RunDir | None) -> ContextManager[None]:
    """A failed write into the run directory as one RunError (nothing to guard without one)."""
    return run.writing() if run is not None else nullcontext()


class Trainer:
    """Everything one run needs, built once from a validated config and its data.

    The network goes by three names, each for one use:

    - `network`: the whole model; what is saved, restored, exported, and what callbacks see.
    - `trained`: what `splits` feed, so what evaluation calls: `network`, or its layers
      after a frozen backbone whose outputs `prepare_training` cached (then `splits`
      hold those outputs).
    - `step_module`: what a training step calls: `trained`, in its DDP wrapper under DDP
      (the context keeps the wrapper), compiled when `fit.compile_model` asks. Only
      `prepare_step` sets it.

    `step` is one eager training step; with `fit.cuda_graphs` on (CUDA only), `graphs`
    runs the steps instead: replays of the captured step, and `step` where it cannot.
    """

    def __init__(
        self, loaded: LoadedConfig, data: DataBundle, built: BuiltModel, ctx: Context, reporter: Reporter | None = None
    ) -> None:
        config = loaded.config
        self.loaded = loaded
        self.config = config
        self.data = data
        self.built = built
        self.ctx = ctx
        self.reporter = reporter or Reporter()
        self.speed = choose(config, ctx.device, ctx.world_size, isinstance(data.train, Split), built.network)
        self.network = built.network.to(ctx.device)
        if self.speed.channels_last:
            self.network.to(memory_format=torch.channels_last)
        self.trained: torch.nn.Module = self.network  # what `splits` feed (see the class docstring)
        self.splits = {
            name: split.to(ctx.device)
            for name, split in (("train", data.train), ("val", data.val), ("test", data.test))
            if split is not None
        }
        shapes = {row.name: row.output_shape for row in built.summary}  # per sample; the loss fits its output's
        widths = {n: h.width for n, h in data.heads.items()} if is_multi(config) else {}  # type: ignore[attr-defined]
        self.heads = build_heads(loaded, widths, shapes) if is_multi(config) else None
        output = built.summary[-1].output_shape  # a model with one output ends in it
        self.loss_fn = self.heads.loss if self.heads else build_loss(config.compile.loss, output)
        groups = param_groups(self.network, config.compile.optimizer.lr)
        self.optimizer = build_optimizer(groups, config.compile.optimizer, self.speed.optimizer_options())
        self.trainable = [p for group in self.optimizer.param_groups for p in group["params"]]  # clipped together
        self.metrics: dict[str, Any] = (
            self.heads.columns if self.heads else build_metrics(config.compile.metrics, data.task, data.target_width)  # type: ignore[arg-type]  # a list unless is_multi
        )
        self.tracker = self.new_tracker()
        self.epoch = 0  # epochs completed
        self.partial_step = 0  # steps of epoch `epoch + 1` done when a Ctrl-C or SIGTERM stopped it
        self.history: list[dict[str, Any]] = []
        self.lr = LearningRate(self.optimizer, config.compile.lr_schedule, config.fit.epochs)
        self.precision = Precision(config.fit.precision, ctx.device)
        self.callbacks, self.checkpointer = build_callbacks(
            loaded, self.row_keys(), "val_loss" if "val" in self.splits else "loss"
        )
        self.monitor = self.checkpointer.monitor.key  # type: ignore[union-attr]  # what best.pt is best at
        self.step_module: torch.nn.Module = self.network  # what a training step calls (set by `prepare_step`)
        self._stepped: torch.nn.Module | None = None  # the (wrapped) module `step_module` was built from
        self.graphs: GraphedStep | None = None  # fit.cuda_graphs: the captured step (set by `prepare_training`)
        self.run: RunDir | None = None  # the run directory `fit` writes (None in evaluate, check, the API without one)
        self.restored: checkpoint.Checkpoint | None = None  # the checkpoint the weights came from
        self._frozen_ref: Any = None  # ((folder, keys), FrozenRef) of the frozen weights written this run
        self._frozen_keys: tuple[tuple[bool, ...], set[str]] | None = None  # (requires_grad of each param, keys)
        self._params = list(self.network.parameters())
        self._facts: dict[str, Any] | None = None  # what every checkpoint of the run repeats (see `_checkpoint`)
        self._snapshot: Any = None  # ((epoch, step, run), Checkpoint): the last `state()`, until training moves on
        self.guard = NanGuard()
        self.stop = StopRequest()
        every = config.fit.checkpoint_every
        self.clock = CheckpointClock(every.steps, every.minutes) if every else CheckpointClock()
        self.stop_training = False  # a callback sets it to end training after this epoch
        self.augment = build_augment(config.data.augment)
        # DataLoader workers, for sources that decode files (in-memory data is batched by indexing)
        self.workers: int | None = (
            config.fit.num_workers if config.fit.num_workers is not None else getattr(config.data, "num_workers", None)
        )

    def new_tracker(self) -> Any:
        """An empty tracker of the loss and metrics (per output, for a model with several)."""
        return self.heads.tracker(self.ctx.device) if self.heads else Tracker(self.metrics, self.ctx.device)

    def row_keys(self) -> list[str]:
        """The columns of an epoch's row that a callback may monitor."""
        keys = ["loss", *self.metrics]
        return keys + [f"val_{k}" for k in keys if "val" in self.splits] + ["lr"]

    @property
    def best(self) -> float | None:
        """The best value of `monitor` so far (the one best.pt holds)."""
        return self.checkpointer.monitor.best  # type: ignore[union-attr]

    # --- the loop -------------------------------------------------------------------

    def fit(self, run: RunDir | None) -> dict[str, Any]:
        """Train from `self.epoch` to `fit.epochs`, checkpointing every epoch."""
        fit = self.config.fit
        self.run = run
        self.reporter.fit_start(self.built, run.path if run else None, self.ctx.describe(), self.epoch, fit.epochs)
        for note in self.built.notes + self.speed.lines():
            self.reporter.message(note)
        batches = self.prepare_training()
        self.guard.run_path, self.guard.writes_files = (run.path if run else None), run is not None and self.ctx.is_main
        with (
            self.stop,
            deterministic_mode(fit.deterministic),
            _writing(run),
            tidy_display(self.reporter),
            thread_count(self.threads()),
        ):
            self.run_epochs(batches, run)
        for callback in self.callbacks:
            callback.on_fit_end(self)
        self._snapshot = None  # on_fit_end may have restored other weights
        results = self.final_results()
        if run is not None and self.ctx.is_main:
            with run.writing():
                run.write_metrics(results)
                write_curves(self.history, run.path / "curves.png")
                for callback in self.callbacks:
                    callback.write_final(self, run, results)
        self.reporter.fit_end(run.path if run else None, results)
        return results

    def run_epochs(self, batches: Batches, run: RunDir | None) -> None:
        """Epoch after epoch, until `fit.epochs`, a callback's stop, or a Ctrl-C or SIGTERM."""
        fit = self.config.fit
        for epoch in range(self.epoch + 1, fit.epochs + 1):
            started = time.perf_counter()
            unfreeze(self.network, epoch, self.reporter)
            self.prepare_step()  # under DDP, a new wrapper when unfreezing changed what trains
            self.reporter.epoch_start(epoch, fit.epochs, len(batches))
            row: dict[str, Any] = {"epoch": epoch, **self.train_epoch(batches, epoch, self.partial_step)}
            if self.partial_step:
                self.interrupted(run, epoch)
            self.ctx.sync_buffers(self.network)
            if "val" in self.splits:
                row.update({f"val_{k}": v for k, v in self.evaluate(self.splits["val"]).items()})
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            row["seconds"] = round(time.perf_counter() - started, 4)
            self.epoch = epoch
            self.history.append(row)
            for callback in self.callbacks:
                callback.on_epoch_end(self, row)
            if run is not None and self.ctx.is_main:
                run.write_history(self.history)
                run.save_checkpoint("last.pt", self.state())  # within the writes' budget, else held back
                for callback in self.callbacks:
                    callback.write(self, run)
            self.clock.saved()
            self.reporter.epoch_end(epoch, row)
            if self.stop.requested:
                self.interrupted(run, epoch)
            if self.stop_training:
                break

    def train_epoch(self, batches: Batches, epoch: int, start: int = 0) -> dict[str, float]:
        """One pass over the training data (from step `start + 1`); returns the epoch's loss and metrics."""
        tracker, lr, guard = self.tracker, self.lr, self.guard
        every, steps = self.config.fit.accumulate_grad_batches, len(batches)
        run_step = self.graphs.start_epoch() if self.graphs is not None else self.step
        self.network.train()
        self._snapshot = None
        if start == 0:
            tracker.reset()
        self.partial_step = 0
        guard.start_epoch(start)
        tracker.lr = lr.update(epoch, start + 1)
        step = start
        for step, (x, y) in enumerate(batches.epoch(epoch, start), start=start + 1):
            if lr.per_step:
                tracker.lr = lr.update(epoch, step)
            stepping = step % every == 0 or step == steps
            loss, outputs = run_step(x, y, stepping)
            tracker.update(loss, outputs, y)
            self.reporter.step(step, tracker)
            if guard.due():  # a few times a second: one host read
                guard.check(tracker, epoch, step)
            # Ctrl-C or SIGTERM: stop after this step (under DDP at the epoch's end, so no rank waits in a collective)
            if self.stop.requested and step % every == 0 and step < steps and self.ctx.world_size == 1:
                self.partial_step = step
                break
            if self.clock.tick() and step % every == 0 and step < steps:  # fit.checkpoint_every
                self.save_mid_epoch(step)
        tracker.all_reduce(self.ctx.all_reduce)
        guard.check(tracker, epoch, step)
        return tracker.compute()

    def step(self, x: torch.Tensor, y: torch.Tensor, stepping: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One eager step: forward, backward and, when `stepping`, the optimizer step; (loss, outputs)."""
        fit, network, precision = self.config.fit, self.network, self.precision
        every = fit.accumulate_grad_batches
        with nullcontext() if stepping else self.ctx.no_sync():  # accumulate locally
            with precision.autocast():
                outputs = self.step_module(x)
                loss = self.loss_fn(outputs, y)
                if network.has_penalty:
                    loss = loss + network.penalty()
            precision.backward(loss / every if every > 1 else loss)
        if stepping:
            precision.step(self.optimizer, self.trainable, fit.gradient_clip)
        return loss, outputs

    def threads(self) -> int | None:
        """`fit.num_threads` for training on the CPU; None keeps PyTorch's (always on a GPU)."""
        if self.ctx.device.type != "cpu":
            return None
        outputs = sum(math.prod(row.output_shape) for row in self.built.summary)
        return cpu_threads(self.config.fit.num_threads, self.config.fit.batch_size, self.built.total_params, outputs)

    def prepare_training(self) -> Batches:
        """Set `trained`, `splits` and `step_module` as training needs them; the training batches.

        Frozen leading backbone outputs are cached here when the config allows (then
        `trained` is the head and `splits` hold features). `fit` and the benches call this.
        """
        fit = self.config.fit
        self.trained, self.splits = cache_features(self.network, self.splits, self.data.plan, EVAL_BATCH, self.reporter)
        batches = make_batches(
            self.splits["train"],
            fit.batch_size,
            fit.shuffle,
            self.config.seed or 0,
            self.ctx.device,
            self.ctx.rank,
            self.ctx.world_size,
            augment=self.augment,
            workers=self.workers,
        )
        self.lr.steps = len(batches)
        self.prepare_step()
        self.graphs = graphed_step(self) if self.speed.graphs.enabled else None
        return batches

    def prepare_step(self) -> None:
        """Set `step_module`: `trained`, in its DDP wrapper under DDP, compiled when `fit.compile_model` asks.

        Rebuilt only with the wrapper (under DDP, when unfreezing changed what trains), so
        one process compiles once.
        """
        wrapped = self.ctx.wrap(self.trained)
        if wrapped is self._stepped:
            return
        self._stepped = self.step_module = wrapped
        fit = self.config.fit
        if fit.compile_model:
            sample = first_inputs(self.splits["train"], fit.batch_size).to(self.ctx.device)
            self.step_module = compile_network(wrapped, sample, self.reporter.message)

    def save_mid_epoch(self, step: int) -> None:
        """`fit.checkpoint_every`: last.pt after `step` steps of this epoch, which `--resume` continues exactly.

        One process only: under DDP each rank's running metrics and random streams differ,
        so a mid-epoch state would not resume exactly; the epoch-end checkpoint does.
        """
        if self.run is not None and self.ctx.world_size == 1:
            self.run.save_checkpoint("last.pt", self.state(step), now=True)
        self.clock.saved()

    def interrupted(self, run: RunDir | None, epoch: int) -> None:
        """After the first Ctrl-C or SIGTERM: save where training is, say how to continue, stop (exit 130 or 143)."""
        self.reporter.abort()
        where = f"epoch {epoch}, step {self.partial_step}" if self.partial_step else f"the end of epoch {epoch}"
        text = f"{'Terminated (SIGTERM)' if self.stop.signum == signal.SIGTERM else 'Interrupted'} at {where}."
        if run is not None and self.ctx.is_main:
            if self.partial_step:
                run.save_checkpoint("last.pt", self.state(), now=True)
            run.flush()  # with what the writes' budget held back
            text += f" Saved {run.path / 'last.pt'}; continue with: dltrain fit --resume {run.path}"
        self.reporter.message(text)
        raise self.stop.stop()

    @torch.inference_mode()
    def evaluate(self, split: Split, confusion: bool = False) -> dict[str, Any]:
        """Loss and metrics over `split` (and the confusion matrix, when asked)."""
        if isinstance(split, Split):  # in-memory data must be where the model is (a no-op when it is)
            split = split.to(self.ctx.device)
        self.network.eval()
        tracker = self.new_tracker()
        classes = self.data.confusion_classes
        matrix = torch.zeros(classes * classes, dtype=torch.int64, device=self.ctx.device) if classes else None
        batches = make_batches(
            split,
            max(self.config.fit.batch_size, EVAL_BATCH),
            False,
            0,
            self.ctx.device,
            self.ctx.rank,
            self.ctx.world_size,
            pad=False,
            workers=self.workers,
        )
        for x, y in batches.epoch(0):
            outputs = self.trained(x)
            tracker.update(self.loss_fn(outputs, y), outputs, y)
            if confusion and matrix is not None:
                predicted = predicted_labels(self.data.task, outputs).long().reshape(-1)
                truth = y.reshape(-1) if self.data.task == "classification" else (y > 0.5).long().reshape(-1)
                matrix += torch.bincount(truth * classes + predicted, minlength=classes * classes)
        tracker.all_reduce(self.ctx.all_reduce)
        values: dict[str, Any] = tracker.compute()
        if confusion and matrix is not None:
            values["confusion_matrix"] = self.ctx.all_reduce(matrix).view(classes, classes).cpu().tolist()
        return values

    def final_results(self) -> dict[str, Any]:
        """What metrics.json holds: the final model on the validation and test splits."""
        results: dict[str, Any] = {"epochs": self.epoch, "monitor": self.monitor, "best": self.best}
        for name in ("val", "test"):
            if name in self.splits:
                results[name] = self.evaluate(self.splits[name])
        return results

    # --- checkpoint state -----------------------------------------------------------

    def state(self, step: int | None = None) -> checkpoint.Checkpoint:
        """This run as a checkpoint (mid-epoch after `step` steps, or `partial_step`), detached from
        training (so it can be written in the background).

        In a run directory, frozen backbone weights are referenced, not copied. Asked
        again before training moves on (best.pt after last.pt), it is the same snapshot,
        which the writer links instead of writing twice.
        """
        step = self.partial_step if step is None else step
        if self._snapshot is not None and self._snapshot[0] == (self.epoch, step, self.run):
            return self._snapshot[1]
        model = self.network.state_dict(keep_vars=True)  # `detached` below detaches what it keeps
        frozen = None
        if self.run is not None:
            model, frozen = self.split_frozen(model, self.run.path)
        snapshot = self._checkpoint(checkpoint.detached(model), frozen, step)
        self._snapshot = ((self.epoch, step, self.run), snapshot)
        return snapshot

    def _checkpoint(self, model: dict[str, torch.Tensor], frozen: Any, step: int) -> checkpoint.Checkpoint:
        if self._facts is None:  # the same in every checkpoint of the run: built once (never changed in place)
            config = self.loaded.resolved()
            sources = [dict(source) for source in self.loaded.sources]
            self._facts = {"config": config, "config_sources": sources, "imports": custom.requirements(config)}
        return checkpoint.Checkpoint(
            **self._facts,
            model=model,
            task=self.data.task,
            input_shape=list(self.data.input_shape),
            num_classes=self.data.num_classes,
            target_width=self.data.target_width,
            class_names=self.data.class_names,
            output_activation=self.network.output_activation,
            preprocessing=self.data.preprocessing.state(),
            tokenizer=self.data.preprocessing.tokenizer,
            input_plan=self.data.plan.state() if self.data.plan is not None else None,
            outputs=[asdict(head) for head in self.data.heads.values()] if self.heads else None,  # type: ignore[attr-defined]
            epoch=self.epoch,
            history=[dict(row) for row in self.history],
            best=self.best,
            monitor=self.monitor,
            optimizer=checkpoint.detached(self.optimizer.state_dict()),
            scheduler=self.lr.state(),
            scaler=self.precision.state(),
            callbacks=checkpoint.detached([{"type": type(c).__name__, "state": c.state()} for c in self.callbacks]),
            partial=checkpoint.detached({"step": step, "tracker": self.tracker.state()}) if step else None,
            stream=streaming.position(self.splits["train"], step, self.config.fit.batch_size),
            rng=checkpoint.rng_state(),
            frozen=frozen,
        )

    def frozen_now(self) -> set[str]:
        """`frozen_keys(network)`, found again only when what trains changed (it walks every module)."""
        trains = tuple(p.requires_grad for p in self._params)
        if self._frozen_keys is None or self._frozen_keys[0] != trains:
            self._frozen_keys = (trains, frozen_keys(self.network))
        return self._frozen_keys[1]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The network's state without the frozen backbone blocks that no later epoch unfreezes: all of it
        that can still change (what EarlyStopping keeps of the best epoch)."""
        later = any(
            b.unfreeze_at_epoch is not None and b.unfreeze_at_epoch > self.epoch for b in backbones(self.network)
        )
        fixed = frozen_keys(self.network, self.epoch) if later else self.frozen_now()
        return {k: v for k, v in self.network.state_dict().items() if k not in fixed}

    def split_frozen(self, model: dict[str, torch.Tensor], folder: Path) -> tuple[dict[str, torch.Tensor], Any]:
        """(the weights that train, a reference to the frozen ones), writing those once per run and folder."""
        keys = self.frozen_now()
        if not keys:
            return model, None
        moving, fixed = checkpoint.split_frozen(model, keys)
        cached = self._frozen_ref
        if cached is None or cached[0] != (folder, frozenset(keys)):
            cached = ((folder, frozenset(keys)), checkpoint.write_frozen(folder, fixed))
            self._frozen_ref = cached
        return moving, cached[1]

    def load_state(self, saved: checkpoint.Checkpoint, resume: bool) -> None:
        """Restore weights (and, to resume, the optimizer, epoch, history and RNGs), checked to fit this run."""
        hint = " (a --set that changes the model does not fit a trained checkpoint)" if self.loaded.overridden else ""
        check_fits_data(saved, self.data)
        self.network.load_state_dict(saved.weights_for(self.network, hint))
        self.restored = saved
        self._snapshot = None
        if resume:
            if saved.optimizer is None or saved.rng is None:
                raise CheckpointError(f"'{saved.path}' holds weights only (no optimizer state); it cannot be resumed")
            self.optimizer.load_state_dict(saved.optimizer)
            self.epoch = saved.epoch
            self.history = list(saved.history)
            checkpoint.restore_rng(saved.rng)
            self.lr.load_state(saved.scheduler)
            self.precision.load_state(saved.scaler)
            for callback, kept in zip(self.callbacks, saved.callbacks):
                if type(callback).__name__ == kept["type"]:
                    callback.load_state(kept["state"])
            streaming.check_position(saved.stream, self.splits["train"], saved.path)
            if saved.partial:
                self.partial_step = saved.partial["step"]
                if self.ctx.is_main:  # the epoch's sums so far: ranks add theirs up, so one holds them
                    self.tracker.load_state(saved.partial["tracker"])


def frozen_keys(network: torch.nn.Module, after: int | None = None) -> set[str]:
    """State keys of frozen backbone blocks: their weights and (eval-mode) statistics cannot change
    (with `after`, only those of backbones that no epoch after it unfreezes)."""
    names = {id(m): name for name, m in network.named_modules()}
    keys: set[str] = set()
    for backbone in backbones(network):
        if after is not None and backbone.unfreeze_at_epoch is not None and backbone.unfreeze_at_epoch > after:
            continue
        for block in backbone.blocks:
            if any(p.requires_grad for module in block for p in module.parameters()):
                continue
            for module in block:
                keys.update(module.state_dict(prefix=names[id(module)] + ".").keys())
    return keys


def check_fits_data(saved: checkpoint.Checkpoint, data: DataBundle) -> None:
    """The checkpoint's description of its inputs and classes must match the data it is used with."""
    checkpoint.check_consistent(saved)
    where = saved.path or "checkpoint"
    if list(data.input_shape) != list(saved.input_shape):
        raise CheckpointError(
            f"'{where}' says its inputs are {saved.input_shape}, but its data config gives "
            f"samples of {list(data.input_shape)}: the checkpoint is damaged or its data changed"
        )
