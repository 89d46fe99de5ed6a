"""What writing last.pt and best.pt every epoch costs a run, against the same epochs without them.

For each config, a trainer built as `fit` builds it (frozen backbone outputs cached when
the config allows) runs blocks of epochs (training and validation), alternately without
checkpoints and with last.pt + best.pt written after every epoch as `fit` writes them
(in the background; the block's time includes waiting for the last write). Reported:
the fastest block's epoch of each kind, the overhead, the share of an epoch the loop
itself spends in the save calls (what a busy machine disturbs least), and the size of last.pt + best.pt.

    python -m bench.checkpoint_cost [--epochs 4] [--rounds 3] [--threads 1] [--configs digits_cnn digits_vgg16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dltrain.build import build_trainer
from dltrain.config import load_config
from dltrain.data.batches import Batches, make_batches
from dltrain.reporting import Reporter
from dltrain.train.feature_cache import cache_features
from dltrain.train.rundir import RunDir
from dltrain.train.trainer import EVAL_BATCH, Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _block(
    trainer: Trainer, batches: Batches, run: RunDir | None, first: int, epochs: int, blocking: list[float]
) -> float:
    """Seconds per epoch over `epochs` epochs (with checkpoints when `run` is given, waiting for the last).

    `blocking` gets the seconds the loop itself spent in the save calls, per epoch.
    """
    start = time.perf_counter()
    for epoch in range(first, first + epochs):
        trainer.train_epoch(batches, epoch)
        trainer.evaluate(trainer.splits["val"])
        trainer.epoch = epoch
        if run is not None:
            saving = time.perf_counter()
            run.save_checkpoint("last.pt", trainer.state())
            run.save_checkpoint("best.pt", trainer.state())
            blocking.append(time.perf_counter() - saving)
    if run is not None:
        run.flush()
    return (time.perf_counter() - start) / epochs


def measure(name: str, epochs: int, rounds: int) -> dict[str, float]:
    loaded = load_config(CONFIGS / f"{name}.yaml", ["fit.device=cpu"])
    trainer = build_trainer(loaded)
    fit = trainer.config.fit
    trainer.forward, trainer.splits = cache_features(
        trainer.network, trainer.splits, trainer.config.data, EVAL_BATCH, Reporter()
    )
    batches = make_batches(trainer.splits["train"], fit.batch_size, True, 0, trainer.ctx.device)
    trainer.lr.steps = len(batches)
    trainer.prepare_model()
    plain, written, blocking = [], [], []
    with tempfile.TemporaryDirectory(prefix="dltrain-bench-") as folder:
        run = RunDir(Path(folder))
        trainer.run = run
        _block(trainer, batches, run, 1, 1, [])  # warm-up; writes the frozen weights once
        for number in range(rounds):
            first = 2 + 2 * number * epochs
            plain.append(_block(trainer, batches, None, first, epochs, blocking))
            written.append(_block(trainer, batches, run, first + epochs, epochs, blocking))
        size = sum((Path(folder) / f).stat().st_size for f in ("last.pt", "best.pt"))
        run.close()
    base, with_writes = min(plain), min(written)
    return {
        "epoch_ms": base * 1e3,
        "blocking": statistics.median(blocking) / base,
        "with_ms": with_writes * 1e3,
        "overhead": with_writes / base - 1,
        "last_best_mb": size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per block")
    parser.add_argument("--rounds", type=int, default=3, help="blocks of each kind (the fastest counts)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--configs", nargs="+", default=["digits_cnn", "digits_vgg16"])
    args, _ = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    print(f"cpu, {torch.get_num_threads()} threads, fastest of {args.rounds} blocks of {args.epochs} epochs")
    for name in args.configs:
        m = measure(name, args.epochs, args.rounds)
        print(
            f"  {name:<14} epoch {m['epoch_ms']:8.1f} ms   with last.pt+best.pt {m['with_ms']:8.1f} ms "
            f"({m['overhead'] * 100:+5.1f}%; the loop waits {m['blocking'] * 100:4.1f}%)   last.pt+best.pt {m['last_best_mb']:6.2f} MiB"
        )


if __name__ == "__main__":
    main()
