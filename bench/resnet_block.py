"""Epoch time of a ResNet-block graph model (configs/digits_resnet.yaml) in dltrain vs the same model by hand.

The hand-written model is the PyTorch a user would write: one nn.Module whose forward
adds each block's input back. Both train with the same optimizer, batch size and data
in the same plain loop (bench.digits_epoch's floor), and dltrain also through its
Trainer; runs are interleaved and the median of several epochs is reported.

    python -m bench.resnet_block [--device cpu] [--epochs 8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from bench.digits_epoch import plain_epoch
from dltrain.build import prepare, seed_everything
from dltrain.config import load_config
from dltrain.data.batches import TensorBatches
from dltrain.train.distributed import Context, resolve_device
from dltrain.train.trainer import Trainer

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits_resnet.yaml"


def _conv_bn(channels: int) -> list[nn.Module]:
    return [
        nn.ZeroPad2d(1),
        nn.Conv2d(channels, channels, 3, bias=False),
        nn.BatchNorm2d(channels, eps=1e-3, momentum=0.1),
    ]


class HandResNet(nn.Module):
    """The preset's network written directly: stem, two residual blocks, global pooling, Dense."""

    def __init__(self, channels: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.ZeroPad2d(1),
            nn.Conv2d(1, channels, 3, bias=False),
            nn.BatchNorm2d(channels, eps=1e-3, momentum=0.1),
            nn.ReLU(),
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(*_conv_bn(channels), nn.ReLU(), *_conv_bn(channels)) for _ in range(2)
        )
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = torch.relu(x + block(x))
        return self.head(x.mean(dim=(2, 3)))


def measure(device: str, epochs: int) -> dict[str, float]:
    loaded = load_config(CONFIG, [f"fit.device={device}"])
    seed_everything(0)
    data, built = prepare(loaded)
    ctx = Context(resolve_device(device))
    trainer = Trainer(loaded, data, built, ctx)
    batches = TensorBatches(trainer.splits["train"], loaded.config.fit.batch_size, True, 0)
    _, graph_built = prepare(loaded)
    graph_net = graph_built.network.to(ctx.device)
    hand_net = HandResNet().to(ctx.device)
    assert sum(p.numel() for p in hand_net.parameters()) == sum(p.numel() for p in graph_net.parameters())
    optimizers = {
        name: torch.optim.Adam(net.parameters(), lr=3e-3, eps=1e-7)
        for name, net in (("graph", graph_net), ("hand", hand_net))
    }
    x, y = trainer.splits["train"].x, trainer.splits["train"].y
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {"dltrain": [], "graph": [], "hand": []}
    for epoch in range(1, epochs + 1):
        for name in times:
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            if name == "dltrain":
                trainer.train_epoch(batches, epoch)
            else:
                net = graph_net if name == "graph" else hand_net
                plain_epoch(net, optimizers[name], x, y, loaded.config.fit.batch_size, generator, accuracy=True)
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            if epoch > 2:  # warm-up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=8)
    args, _ = parser.parse_known_args()
    m = measure(args.device, args.epochs)
    print(
        f"digits_resnet epoch on {args.device} (median of {args.epochs - 2}): "
        f"hand-written PyTorch in a plain loop {m['hand'] * 1e3:.1f} ms; dltrain's graph module in the same loop "
        f"{m['graph'] * 1e3:.1f} ms ({m['hand'] / m['graph']:.2f}x); dltrain's Trainer {m['dltrain'] * 1e3:.1f} ms "
        f"({m['hand'] / m['dltrain']:.2f}x)"
    )


if __name__ == "__main__":
    main()
