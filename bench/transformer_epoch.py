"""Tokens per second of a small Transformer language model's epoch in dltrain vs a plain PyTorch loop.

The model is a GPT-style character model of the standard library's json and email source
(offline): PositionalEmbedding, two causal TransformerDecoder blocks, Dense to the
vocabulary. Both sides train the same network (built once by dltrain, copied), with the
same optimizer, batch size and batches on the same device; the plain loop is the
device-resident floor of bench.digits_epoch (randperm and slicing, loss and accuracy summed
on the device, one host sync per epoch). Epochs are interleaved; medians are reported.

    python -m bench.transformer_epoch [--device cpu] [--epochs 8] [--chars 60000] [--threads N]
                                      [--precision bf16-mixed] [--compile]

On a shared machine, wall-clock medians move with the neighbours' load; the process's CPU
time (also reported) counts only the work each side does.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any

import torch

from bench.digits_epoch import plain_epoch
from dltrain.build import build_trainer
from dltrain.config import validate

SEQUENCE_LENGTH = 64


def config(device: str, chars: int, precision: str, compile_model: bool) -> dict[str, Any]:
    """The benchmarked run: an epoch reads about `chars` tokens (one per character)."""
    return {
        "name": "transformer_epoch",
        "seed": 0,
        "data": {
            "source": "stdlib_source",
            "modules": ["json", "email"],
            "max_chars": chars,
            "sequence_length": SEQUENCE_LENGTH,
            "tokenizer": {"type": "char"},
        },
        "model": {
            "layers": [
                {"type": "PositionalEmbedding", "output_dim": 64},
                {"type": "TransformerDecoder", "num_heads": 4, "ff_dim": 256, "num_layers": 2, "normalize_first": True},
                {"type": "LayerNormalization"},
                {"type": "Dense", "units": "auto"},
            ]
        },
        "compile": {
            "optimizer": {"type": "adam", "lr": 1e-3},
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "fit": {
            "epochs": 1,
            "batch_size": 32,
            "validation_split": 0.0,
            "device": device,
            "precision": precision,
            "compile_model": compile_model,
        },
    }


def measure(device: str, epochs: int, chars: int, precision: str, compile_model: bool) -> tuple[dict[str, float], int]:
    """Median seconds per epoch of each side, and the training tokens in an epoch."""
    loaded = validate(config(device, chars, precision, compile_model), "bench/transformer_epoch.py")
    trainer = build_trainer(loaded, training=True)
    batches = trainer.prepare_training()  # as `fit` does
    train = trainer.splits["train"]

    plain_net = copy.deepcopy(trainer.network).to(trainer.ctx.device)
    if compile_model:
        plain_net = torch.compile(plain_net)
    plain_opt = torch.optim.Adam(plain_net.parameters(), lr=1e-3, eps=1e-7)
    autocast = precision != "32"
    generator = torch.Generator().manual_seed(0)

    def sync() -> None:
        if trainer.ctx.device.type == "cuda":
            torch.cuda.synchronize()

    wall: dict[str, list[float]] = {"dltrain": [], "plain": []}
    cpu: dict[str, list[float]] = {"dltrain": [], "plain": []}
    for epoch in range(1, epochs + 1):
        for name in wall:
            sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            if name == "dltrain":
                trainer.train_epoch(batches, epoch)
            else:
                with torch.autocast(trainer.ctx.device.type, torch.bfloat16, enabled=autocast):
                    plain_epoch(plain_net, plain_opt, train.x, train.y, loaded.config.fit.batch_size, generator, True)
            sync()
            if epoch > 2:  # warm-up (and compilation)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    medians = {name: statistics.median(values) for name, values in wall.items()}
    medians.update({f"{name} cpu": statistics.median(values) for name, values in cpu.items()})
    return medians, train.y.numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--chars", type=int, default=60_000, help="characters of source read (tokens per epoch)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's)")
    parser.add_argument("--precision", default="32", choices=["32", "bf16-mixed"])
    parser.add_argument("--compile", action="store_true")
    args, _ = parser.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    medians, tokens = measure(args.device, args.epochs, args.chars, args.precision, args.compile)
    rate = {name: tokens / seconds for name, seconds in medians.items()}
    print(
        f"transformer LM epoch ({tokens:,} tokens) on {args.device}, {torch.get_num_threads()} thread(s), "
        f"precision {args.precision}{', compiled' if args.compile else ''} (median of {args.epochs - 2}): "
        f"dltrain {rate['dltrain']:,.0f} tokens/s, plain loop {rate['plain']:,.0f} tokens/s "
        f"(dltrain at {rate['dltrain'] / rate['plain']:.2f}x); per CPU second (process time): dltrain "
        f"{rate['dltrain cpu']:,.0f}, plain {rate['plain cpu']:,.0f} (dltrain at "
        f"{rate['dltrain cpu'] / rate['plain cpu']:.2f}x)"
    )


if __name__ == "__main__":
    main()
