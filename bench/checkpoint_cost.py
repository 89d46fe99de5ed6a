"""What writing last.pt and best.pt costs an epoch, as `fit` writes them.

For each config, a trainer built as `fit` builds it (frozen backbone outputs cached when
the config allows) runs blocks of epochs (training and validation, one thread),
alternately without checkpoints and with them as `fit` writes them: last.pt and best.pt
(as if every epoch improved) submitted at the end of every epoch, written within the
writes' budget (`checkpoint.WRITE_BUDGET`) and held back otherwise.

The cost is counted in CPU time, which a machine busy with other work disturbs far less
than wall time: the loop's own time in the save calls plus the background writer
thread's (it needs the GIL to pickle, so on an idle machine its time is taken from the
training thread too), against the CPU time of an epoch without checkpoints. The wall
times are printed as well (meaningful on an idle machine only), with the share of
epochs whose checkpoints were written and the size of last.pt + best.pt.

    python -m bench.checkpoint_cost [--epochs 8] [--rounds 3] [--configs digits_cnn digits_vgg16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from dltrain.build import build_trainer
from dltrain.config import load_config
from dltrain.data.batches import Batches
from dltrain.train.rundir import RunDir
from dltrain.train.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _block(trainer: Trainer, batches: Batches, run: RunDir | None, first: int, epochs: int) -> dict[str, float]:
    """Per epoch over `epochs` epochs: wall and CPU seconds, and with `run` (checkpoints written as `fit`
    writes them) the loop's CPU seconds in the save calls, the writer's, and the share of epochs saved."""
    wall, cpu, saving = time.perf_counter(), time.thread_time(), 0.0
    spent, written = (run.writer.spent, run.writer.written) if run is not None else (0.0, 0)
    for epoch in range(first, first + epochs):
        trainer.train_epoch(batches, epoch)
        trainer.evaluate(trainer.splits["val"])
        trainer.epoch = epoch
        if run is not None:
            started = time.thread_time()
            run.save_checkpoint("last.pt", trainer.state())
            run.save_checkpoint("best.pt", trainer.state())
            saving += time.thread_time() - started
    if run is not None:
        run.flush(held=False)  # the writes under way, not those held back for a later epoch
        spent, written = run.writer.spent - spent, run.writer.written - written
    return {
        "wall": (time.perf_counter() - wall) / epochs,
        "cpu": (time.thread_time() - cpu - saving) / epochs,
        "loop": saving / epochs,
        "writer": spent / epochs,
        "written": written / epochs,  # files serialized (best.pt of the same snapshot is a hard link to last.pt)
    }


def measure(name: str, epochs: int, rounds: int) -> dict[str, float]:
    loaded = load_config(CONFIGS / f"{name}.yaml", ["fit.device=cpu"])
    trainer = build_trainer(loaded)
    batches = trainer.prepare_training()  # as `fit`: frozen backbone outputs cached when allowed
    plain, saved = [], []
    with tempfile.TemporaryDirectory(prefix="dltrain-bench-") as folder:
        run = RunDir(Path(folder))
        trainer.run = run
        _block(trainer, batches, run, 1, 1)  # warm-up; writes the frozen weights once
        for number in range(rounds):
            first = 2 + 2 * number * epochs
            plain.append(_block(trainer, batches, None, first, epochs))
            saved.append(_block(trainer, batches, run, first + epochs, epochs))
        run.flush()
        size = sum((Path(folder) / f).stat().st_size for f in ("last.pt", "best.pt"))
        run.close()
    base = min(plain, key=lambda b: b["cpu"])
    cheapest = min(saved, key=lambda b: b["loop"] + b["writer"])
    fastest = min(saved, key=lambda b: b["wall"])
    return {
        "epoch_cpu": base["cpu"],
        "loop": cheapest["loop"],
        "writer": cheapest["writer"],
        "cost": (cheapest["loop"] + cheapest["writer"]) / base["cpu"],
        "epoch_wall": min(b["wall"] for b in plain),
        "wall": fastest["wall"] / min(b["wall"] for b in plain) - 1,
        "written": sum(b["written"] for b in saved) / len(saved),
        "mib": size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="epochs per block")
    parser.add_argument("--rounds", type=int, default=3, help="blocks of each kind (the cheapest counts)")
    parser.add_argument("--configs", nargs="+", default=["digits_cnn", "digits_vgg16"])
    args, _ = parser.parse_known_args()
    torch.set_num_threads(1)
    print(f"cpu, 1 thread, cheapest of {args.rounds} blocks of {args.epochs} epochs; per epoch:")
    for name in args.configs:
        m = measure(name, args.epochs, args.rounds)
        print(
            f"  {name:<14} epoch CPU {m['epoch_cpu'] * 1e3:6.1f} ms; checkpoints: loop {m['loop'] * 1e3:5.2f} ms "
            f"+ writer {m['writer'] * 1e3:5.2f} ms = {m['cost'] * 100:4.1f}%   "
            f"(wall: epoch {m['epoch_wall'] * 1e3:6.1f} ms, {m['wall'] * 100:+5.1f}% with checkpoints)   "
            f"written after {m['written'] * 100:3.0f}% of epochs, last.pt+best.pt {m['mib']:5.2f} MiB"
        )


if __name__ == "__main__":
    main()
