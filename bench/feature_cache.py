"""Epoch time of configs/digits_vgg16.yaml with and without cached backbone features.

The frozen VGG16 runs once over every split (the cache), then each epoch trains only
the head; without the cache every epoch runs VGG16 on every batch again. Both trainers
are built from the same config and seed and run interleaved, epoch by epoch; the
report gives the one-time cache cost, the median epoch (training + validation) after
the first, their ratio, and the largest difference in the epoch losses.

    python -m bench.feature_cache [--device cpu] [--epochs 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from dltrain.build import build_trainer
from dltrain.config import load_config
from dltrain.data.batches import Batches
from dltrain.train.trainer import Trainer

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits_vgg16.yaml"


def build(device: str, cache: bool) -> tuple[Trainer, Batches, float]:
    """A trainer set up as `fit` sets it up, and the seconds its cache took."""
    loaded = load_config(CONFIG, [f"fit.device={device}", f"model.layers[0].cache_features={str(cache).lower()}"])
    loaded.config.seed = 0
    trainer = build_trainer(loaded)
    ctx = trainer.ctx
    sync(ctx.device)
    started = time.perf_counter()
    batches = trainer.prepare_training()  # the step calls the head alone when features are cached
    sync(ctx.device)
    seconds = time.perf_counter() - started
    return trainer, batches, seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=4)
    args, _ = parser.parse_known_args()
    runs = {name: build(args.device, name == "cached") for name in ("cached", "uncached")}
    times: dict[str, list[float]] = {name: [] for name in runs}
    losses: dict[str, list[float]] = {name: [] for name in runs}
    rng = {name: torch.get_rng_state() for name in runs}  # each run draws its own Dropout masks, as alone
    for epoch in range(1, args.epochs + 1):
        for name, (trainer, batches, _) in runs.items():
            torch.set_rng_state(rng[name])
            sync(trainer.ctx.device)
            started = time.perf_counter()
            losses[name].append(trainer.train_epoch(batches, epoch)["loss"])
            trainer.evaluate(trainer.splits["val"])
            sync(trainer.ctx.device)
            times[name].append(time.perf_counter() - started)
            rng[name] = torch.get_rng_state()
    cached, uncached = (statistics.median(times[n][1:]) for n in ("cached", "uncached"))
    gap = max(abs(a - b) for a, b in zip(losses["cached"], losses["uncached"]))
    print(
        f"digits_vgg16 on {args.device}, median of epochs 2-{args.epochs} (train + validation): "
        f"cached {cached * 1e3:.1f} ms, uncached {uncached * 1e3:.1f} ms ({uncached / cached:.0f}x faster); "
        f"one-time cache {runs['cached'][2]:.2f} s, first epochs {times['cached'][0]:.2f} s / "
        f"{times['uncached'][0]:.2f} s; largest epoch-loss difference {gap:.2e}"
    )


if __name__ == "__main__":
    main()
