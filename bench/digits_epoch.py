"""Epoch time of configs/digits_mlp.yaml in dltrain vs a plain PyTorch loop, same model.

Both run the same network, optimizer, batch size and data on the same device; the plain
loop is the floor (randperm + slicing, zero_grad/backward/step, loss summed on the
device). Runs are interleaved and the median of several epochs is reported.

    python -m bench.digits_epoch [--device cpu] [--epochs 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from dltrain.build import build_trainer, prepare
from dltrain.config import load_config
from dltrain.data.batches import TensorBatches

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits_mlp.yaml"


def plain_epoch(
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    accuracy: bool = False,
) -> float:
    """The hand-written loop dltrain must match (optionally counting correct predictions too).

    Outputs `(B, C)` with targets `(B,)`, or a language model's `(B, T, V)` with `(B, T)`: the
    token axis is flattened into the batch, as nanoGPT does.
    """
    loss_fn = torch.nn.CrossEntropyLoss()
    network.train()
    total = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    order = torch.randperm(len(x), generator=generator).to(x.device)
    for start in range(0, len(x), batch_size):
        index = order[start : start + batch_size]
        outputs = network(x[index])
        loss = loss_fn(outputs.flatten(0, -2), y[index].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(index)
        if accuracy:
            correct += (outputs.argmax(dim=-1) == y[index]).sum()
    correct.item()
    return total.item() / len(x)


def measure(device: str, epochs: int) -> dict[str, float]:
    loaded = load_config(CONFIG, [f"fit.device={device}"])
    loaded.config = loaded.config.model_copy(update={"seed": 0})  # the config is frozen
    trainer = build_trainer(loaded)
    ctx = trainer.ctx
    batches = TensorBatches(trainer.splits["train"], loaded.config.fit.batch_size, True, 0)

    _, plain_built = prepare(loaded)
    plain_net = plain_built.network.to(ctx.device)
    plain_opt = torch.optim.Adam(plain_net.parameters(), lr=1e-3, eps=1e-7)
    x, y = trainer.splits["train"].x, trainer.splits["train"].y
    generator = torch.Generator().manual_seed(0)

    def sync() -> None:
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()

    times: dict[str, list[float]] = {"dltrain": [], "plain": [], "plain+accuracy": []}
    for epoch in range(1, epochs + 1):
        for name in times:
            sync()
            start = time.perf_counter()
            if name == "dltrain":
                trainer.train_epoch(batches, epoch)
            else:
                plain_epoch(
                    plain_net,
                    plain_opt,
                    x,
                    y,
                    loaded.config.fit.batch_size,
                    generator,
                    accuracy=name == "plain+accuracy",
                )
            sync()
            if epoch > 2:  # warm-up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=15)
    args, _ = parser.parse_known_args()
    medians = measure(args.device, args.epochs)
    print(
        f"digits_mlp epoch on {args.device} (median of {args.epochs - 2}): "
        f"dltrain {medians['dltrain'] * 1e3:.1f} ms (loss + accuracy), "
        f"plain loop {medians['plain'] * 1e3:.1f} ms (loss only; dltrain at {medians['plain'] / medians['dltrain']:.2f}x), "
        f"plain loop {medians['plain+accuracy'] * 1e3:.1f} ms (loss + accuracy; dltrain at "
        f"{medians['plain+accuracy'] / medians['dltrain']:.2f}x)"
    )


if __name__ == "__main__":
    main()
