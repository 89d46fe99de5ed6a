"""One epoch of the tutorial's dense model over a 60,000 x 784 `npz` file: dltrain vs a hand-written loop.

    python -m bench.npz_dense [--device auto|cpu|cuda] [--repeats 5] [--samples 60000] [--threads N]

The npz file (random uint8 images, labels 0-9) is written to a temporary folder. Both
sides train the same 784-64-32-10 relu/softmax network with Adam, batch size 32, on the
same device tensors (loaded and scaled by dltrain's npz source): dltrain through its
Trainer's epoch loop (`Trainer.train_epoch`, the loop `dltrain fit` runs), the hand loop as
randperm + slicing, zero_grad, backward, step and loss (and accuracy) sums on the device.
Runs are interleaved, the order alternating, after one warm-up epoch each; medians are
reported. The target: dltrain at no less than 0.95x the hand loop's speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from dltrain.build import build_trainer
from dltrain.config import load_config
from dltrain.data.batches import make_batches
from dltrain.train.distributed import resolve_device
from dltrain.train.trainer import Trainer


def write_npz(folder: Path, samples: int) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "bench.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (samples, 784), dtype=np.uint8),
        y_train=rng.integers(0, 10, samples, dtype=np.uint8),
        x_test=rng.integers(0, 256, (1000, 784), dtype=np.uint8),
        y_test=rng.integers(0, 10, 1000, dtype=np.uint8),
    )
    return path


def dltrain_trainer(folder: Path, npz: Path, device: str, metrics: list[str]) -> Trainer:
    config = {
        "name": "bench",
        "seed": 0,
        "data": {"source": "npz", "path": str(npz), "normalize": "scale"},
        "model": {
            "layers": [
                {"type": "Dense", "units": 64, "activation": "relu"},
                {"type": "Dense", "units": 32, "activation": "relu"},
                {"type": "Dense", "units": 10, "activation": "softmax"},
            ]
        },
        "compile": {"optimizer": "adam", "loss": "categorical_crossentropy", "metrics": metrics},
        "fit": {"epochs": 1, "batch_size": 32, "device": device},
    }
    path = folder / f"bench-{len(metrics)}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    loaded = load_config(path)
    loaded.config = loaded.config.model_copy(update={"seed": 0})  # the config is frozen
    return build_trainer(loaded)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class HandLoop:
    """The floor: a plain PyTorch loop of the same shape over the same tensors."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, accuracy: bool) -> None:
        self.x, self.y, self.accuracy = x, y, accuracy
        self.model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).to(
            x.device
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, eps=1e-7)
        self.loss_fn = nn.CrossEntropyLoss()

    def epoch(self, epoch: int) -> float:
        x, y, model, optimizer, loss_fn = self.x, self.y, self.model, self.optimizer, self.loss_fn
        model.train()
        generator = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(x), generator=generator).to(x.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        correct = torch.zeros((), dtype=torch.float64, device=x.device)
        for start in range(0, len(x), 32):
            index = order[start : start + 32]
            xb, yb = x[index], y[index]
            outputs = model(xb)
            loss = loss_fn(outputs, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum.add_(loss.detach(), alpha=len(yb))
            if self.accuracy:
                correct += (outputs.detach().argmax(dim=-1) == yb).sum()
        return loss_sum.item() / len(x)


def timed(run, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    sync(device)
    started = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - started


def compare(folder: Path, npz: Path, device: str, repeats: int, metrics: list[str]) -> tuple[float, float]:
    trainer = dltrain_trainer(folder, npz, device, metrics)
    split = trainer.splits["train"]
    batches = make_batches(split, 32, True, 0, trainer.ctx.device)
    hand = HandLoop(split.x, split.y, accuracy=bool(metrics))
    ours, theirs = [], []
    trainer.train_epoch(batches, 0)  # warm-up
    hand.epoch(0)
    for repeat in range(1, repeats + 1):
        pair = [("ours", lambda r=repeat: trainer.train_epoch(batches, r)), ("hand", lambda r=repeat: hand.epoch(r))]
        for name, run in pair if repeat % 2 else pair[::-1]:
            (ours if name == "ours" else theirs).append(timed(run, trainer.ctx.device))
    return statistics.median(ours), statistics.median(theirs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: its default)")
    args = parser.parse_args(argv or [])
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        npz = write_npz(folder, args.samples)
        device = resolve_device(args.device)
        print(
            f"{args.samples} x 784 npz, batch 32, device {device}, {torch.get_num_threads()} threads, "
            f"median of {args.repeats} interleaved epochs"
        )
        for label, metrics in (("loss only", []), ("loss + accuracy", ["accuracy"])):
            ours, hand = compare(folder, npz, str(device), args.repeats, metrics)
            print(
                f"  {label:16s} dltrain {ours:.3f} s/epoch  hand loop {hand:.3f} s/epoch  "
                f"speed ratio {hand / ours:.3f} (target >= 0.95)"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
