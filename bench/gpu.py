"""Training throughput of the tutorial's models: a hand-written loop against dltrain, eager,
with `fit.compile_model` and with `fit.cuda_graphs`.

Models (digits data, in memory, validation split off): the MLP, CNN and RNN presets, the
frozen VGG16 preset (dltrain trains its head on cached features; the hand loop runs the
frozen backbone every step, as the tutorial's loop does) and a small Transformer. Each
at batch 32 and 256. Every cell starts from the same weights (seed 0); the first epoch
is warm-up (capture, compilation) and is not timed; then epochs run until `--seconds`
have passed (at least `--epochs`). Samples/s, and each dltrain column's ratio to the
hand loop. The captured step must train like the eager one: the first epoch's loss of
`graphs` and `eager` must agree to `--rtol` (printed per row; any miss fails the run).

    python -m bench.gpu [--device cuda] [--models mlp,cnn,rnn,vgg16,transformer] [--batches 32,256]
                        [--variants hand,eager,compile,graphs] [--seconds 1.0] [--budget 270]

On `--device cpu` the CUDA-graph column is skipped (it needs CUDA). `--budget` seconds
after the start, the remaining compile cells are skipped, so the run ends in time.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from bench.digits_epoch import plain_epoch
from dltrain.build import build_trainer, prepare
from dltrain.config import LoadedConfig, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRANSFORMER = (
    "model.layers=[{type: Dense, units: 32}, {type: TransformerEncoder, num_heads: 4, ff_dim: 64, num_layers: 2,"
    " dropout: 0.0}, {type: Flatten}, {type: Dense, units: 10, activation: softmax}]"
)
MODELS: dict[str, tuple[str, list[str]]] = {
    "mlp": ("digits_mlp.yaml", []),
    "cnn": ("digits_cnn.yaml", []),
    "rnn": ("digits_rnn.yaml", []),
    "vgg16": ("digits_vgg16.yaml", []),
    "transformer": ("digits_mlp.yaml", ["data.as_sequence=true", TRANSFORMER]),
}
VARIANTS = ("hand", "eager", "compile", "graphs")
TARGETS = {"mlp": 2.0, "cnn": 1.0, "rnn": 1.0}  # issue 18's bar: CUDA graphs against the hand loop
Epoch = Callable[[int], float]  # train epoch n, return its mean loss


def _loaded(model: str, device: str, batch: int, variant: str) -> LoadedConfig:
    name, overrides = MODELS[model]
    settings = [
        "seed=0",
        f"fit.device={device}",
        f"fit.batch_size={batch}",
        "fit.validation_split=0",
        f"fit.compile_model={str(variant == 'compile').lower()}",
        f"fit.cuda_graphs={str(variant == 'graphs').lower()}",
    ]
    return load_config(CONFIGS / name, [*settings, *overrides])


def dltrain_epochs(model: str, device: str, batch: int, variant: str) -> tuple[Epoch, int]:
    """dltrain's training epoch, set up as `Trainer.fit` sets it up; (epoch function, samples per epoch)."""
    loaded = _loaded(model, device, batch, variant)
    trainer = build_trainer(loaded)
    batches = trainer.prepare_training()
    return (lambda epoch: trainer.train_epoch(batches, epoch)["loss"]), len(trainer.splits["train"])


def hand_epochs(model: str, device: str, batch: int) -> tuple[Epoch, int]:
    """The loop a user writes: the same network and data, torch.optim.Adam's defaults, no dltrain."""
    loaded = _loaded(model, device, batch, "hand")
    torch.manual_seed(0)
    data, built = prepare(loaded)
    network = built.network.to(device)
    optimizer = torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=1e-3, eps=1e-7)
    x, y = data.train.x.to(device), data.train.y.to(device)
    generator = torch.Generator().manual_seed(0)
    return (lambda epoch: plain_epoch(network, optimizer, x, y, batch, generator, accuracy=True)), len(x)


def measure(run: tuple[Epoch, int], device: str, seconds: float, epochs: int) -> tuple[float, float]:
    """(samples per second after the warm-up epoch, the first epoch's loss)."""
    epoch, samples = run

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    first = epoch(1)
    sync()
    done, start = 0, time.perf_counter()
    while done < epochs or time.perf_counter() - start < seconds:
        epoch(2 + done)
        done += 1
        sync()
    return samples * done / (time.perf_counter() - start), first


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="32,256")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seconds", type=float, default=1.0, help="least timed seconds per cell")
    parser.add_argument("--epochs", type=int, default=3, help="least timed epochs per cell")
    parser.add_argument("--budget", type=float, default=270.0, help="seconds after which compile cells are skipped")
    parser.add_argument("--rtol", type=float, default=1e-3, help="graphs vs eager first-epoch loss tolerance")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v for v in args.variants.split(",") if v]
    if not args.device.startswith("cuda") and "graphs" in variants:
        variants.remove("graphs")
        print("CUDA graphs skipped: they need a CUDA device", file=sys.stderr)
    started, failures = time.perf_counter(), 0
    verdicts: list[str] = []
    header = ["model", "batch", *[f"{v} (samples/s)" for v in variants], "graphs vs eager loss"]
    rows = [header, ["---"] * len(header)]
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            speeds: dict[str, float] = {}
            losses: dict[str, float] = {}
            for variant in variants:
                if variant == "compile" and time.perf_counter() - started > args.budget:
                    continue
                run = (
                    hand_epochs(model, args.device, batch)
                    if variant == "hand"
                    else dltrain_epochs(model, args.device, batch, variant)
                )
                speeds[variant], losses[variant] = measure(run, args.device, args.seconds, args.epochs)
                print(f"{model} b{batch} {variant}: {speeds[variant]:,.0f} samples/s", file=sys.stderr, flush=True)
            cells = []
            for variant in variants:
                if variant not in speeds:
                    cells.append("skipped (time)")
                    continue
                ratio = f" ({speeds[variant] / speeds['hand']:.2f}×)" if "hand" in speeds and variant != "hand" else ""
                cells.append(f"{speeds[variant]:,.0f}{ratio}")
            agreement = "–"
            if "graphs" in losses and "eager" in losses:
                difference = abs(losses["graphs"] - losses["eager"]) / max(abs(losses["eager"]), 1e-12)
                ok = math.isfinite(difference) and difference <= args.rtol
                failures += not ok
                agreement = f"{'ok' if ok else 'DIFFER'} (rel. {difference:.1e})"
            rows.append([model, str(batch), *cells, agreement])
            if model in TARGETS and "graphs" in speeds and "hand" in speeds:
                ratio = speeds["graphs"] / speeds["hand"]
                verdicts.append(
                    f"{model} batch {batch}: CUDA graphs at {ratio:.2f}× the hand loop "
                    f"(issue 18 asks ≥ {TARGETS[model]:.1f}×: {'met' if ratio >= TARGETS[model] else 'NOT met'})"
                )
    print(f"\nTraining throughput on {device_name(args.device)}, torch {torch.__version__}")
    print(f"(digits, in memory; ×: against the hand-written loop; {time.perf_counter() - started:.0f} s in all)\n")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if verdicts:
        print("\n" + "\n".join(verdicts))
    if failures:
        print(f"\n{failures} model(s) trained differently with CUDA graphs than eagerly (beyond rtol {args.rtol})")
        sys.exit(1)


if __name__ == "__main__":
    main()
