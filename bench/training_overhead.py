"""What the progress display, an lr schedule and callbacks cost per epoch, against the bare loop.

configs/digits_mlp.yaml (without validation split: training only), interleaved epoch by epoch, medians:
  bare        the hand-written loop of bench.digits_epoch (loss + accuracy on the device)
  dltrain     Trainer.train_epoch, no display (the Python API's default)
  +display    the same with the CLI's RichReporter drawing a live bar (into a buffer)
  +schedule   the display and a cosine schedule with warmup, set every step
  +all        all that, and at each epoch end EarlyStopping (restore_best_weights), ReduceLROnPlateau,
              CSVLogger and a ModelCheckpoint writing every epoch, plus the NaN guard

    python -m bench.training_overhead [--device cpu] [--epochs 15] [--threads N]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console

from bench.digits_epoch import CONFIG, plain_epoch
from dltrain.build import build_trainer
from dltrain.config import load_config
from dltrain.data.batches import TensorBatches
from dltrain.display import RichReporter
from dltrain.reporting import Reporter
from dltrain.train.rundir import RunDir
from dltrain.train.trainer import Trainer

EVERYTHING = [
    "compile.lr_schedule={type: cosine, warmup_epochs: 1}",
    "fit.callbacks=[{type: EarlyStopping, monitor: loss, patience: 100, restore_best_weights: true},"
    " {type: ReduceLROnPlateau, monitor: loss}, {type: CSVLogger, filename: log.csv},"
    " {type: ModelCheckpoint, monitor: loss, save_best_only: false, filename: every.pt}]",
]


def _trainer(device: str, overrides: list[str], reporter: Reporter) -> Trainer:
    loaded = load_config(CONFIG, [f"fit.device={device}", "fit.validation_split=0", *overrides])
    loaded.config = loaded.config.model_copy(update={"seed": 0})  # the config is frozen
    return build_trainer(loaded, reporter=reporter)


def _epoch_with_hooks(
    trainer: Trainer, batches: TensorBatches, run: RunDir, hooks: dict[str, list[float]]
) -> Callable[[int], Any]:
    """One epoch as `Trainer.fit` runs it, minus validation: train, then every callback hook (timed apart)."""

    def epoch(number: int) -> None:
        trainer.reporter.epoch_start(number, 10**6, len(batches))
        row = {"epoch": number, **trainer.train_epoch(batches, number), "lr": trainer.lr.update(number, 1)}
        trainer.epoch = number
        trainer.history.append(row)
        for callback in trainer.callbacks:
            start = time.perf_counter()
            callback.on_epoch_end(trainer, row)
            callback.write(trainer, run)
            name = type(callback).__name__ + (
                f" {callback.params.filename}" if callback.params.type == "ModelCheckpoint" else ""
            )
            hooks.setdefault(name, []).append(time.perf_counter() - start)
        trainer.reporter.epoch_end(number, {**row, "seconds": 0.0})

    return epoch


def measure(device: str, epochs: int) -> dict[str, float]:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)  # a live bar, drawn into a buffer
    bare = _trainer(device, [], Reporter())
    plain = _trainer(device, [], Reporter())
    shown = _trainer(device, [], RichReporter(console))
    scheduled = _trainer(device, EVERYTHING[:1], RichReporter(console))
    full = _trainer(device, EVERYTHING, RichReporter(console))
    size = plain.config.fit.batch_size
    batches = TensorBatches(plain.splits["train"], size, True, 0)
    full.lr.steps = scheduled.lr.steps = len(batches)
    hooks: dict[str, list[float]] = {}
    x, y = bare.splits["train"].x, bare.splits["train"].y
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(bare.network.parameters(), lr=1e-3, eps=1e-7)
    run = RunDir(Path(tempfile.mkdtemp(prefix="dltrain-bench-")))

    def show(trainer: Trainer) -> Callable[[int], Any]:
        def epoch(number: int) -> None:
            trainer.reporter.epoch_start(number, 10**6, len(batches))
            trainer.train_epoch(batches, number)
            trainer.reporter.abort()

        return epoch

    runs: dict[str, Callable[[int], Any]] = {
        "bare": lambda n: plain_epoch(bare.network, optimizer, x, y, size, generator, accuracy=True),
        "dltrain": lambda n: plain.train_epoch(batches, n),
        "+display": show(shown),
        "+schedule": show(scheduled),
        "+all": _epoch_with_hooks(full, batches, run, hooks),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for number in range(1, epochs + 1):
        for name, run_epoch in runs.items():
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            run_epoch(number)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if number > 2:  # warm-up
                times[name].append(time.perf_counter() - start)
    times.update({f"  {name}": values[2:] for name, values in hooks.items()})
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args, _ = parser.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    medians = measure(args.device, args.epochs)
    base = medians["bare"]
    print(
        f"digits_mlp epoch on {args.device}, {torch.get_num_threads()} threads, median of {args.epochs - 2} "
        f"(callback hooks: their share of +all):"
    )
    for name, value in medians.items():
        print(f"  {name:<28} {value * 1e3:8.2f} ms  {value / base:5.2f}x bare")


if __name__ == "__main__":
    main()
