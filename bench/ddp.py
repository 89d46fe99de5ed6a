"""Epoch time of one process against N DDP processes on the same config.

    python -m bench.ddp [--config CONFIG] [--devices 2] [--device cpu] [--epochs 4] [--repeats 3]

CONFIG defaults to configs/digits_cnn.yaml. Three launches alternate, so that a busy
machine slows all alike: one process with PyTorch's default threads, one process with
one thread, and N processes (torchrun gives each one thread). A run's epoch time is
the median of its epochs after the first (warm-up), read from history.csv; the table
gives the median over repeats, and the wall time of the whole command (start-up
included). Under DDP each process takes 1/N of every epoch, with a global batch of
batch_size × N, so it takes N times fewer steps.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(
    config: str, devices: int, threads: str | None, device: str, epochs: int, run_dir: Path
) -> tuple[float, float]:
    """(median epoch seconds after the first, wall seconds) of one `dltrain fit`."""
    command = [
        sys.executable,
        "-m",
        "dltrain",
        "fit",
        config,
        "--device",
        device,
        "--run-dir",
        str(run_dir),
        "--set",
        f"fit.epochs={epochs}",
        "--devices",
        str(devices),
    ]
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    with open(run_dir / "history.csv", encoding="utf-8") as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    return statistics.median(seconds[1:] or seconds), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "digits_cnn.yaml"))
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args, _ = parser.parse_known_args()  # `python -m bench ddp` passes the module name on
    setups = {
        "1 process, default threads": (1, None),
        "1 process, 1 thread": (1, "1"),
        f"{args.devices} processes, 1 thread each": (args.devices, None),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for index, (name, (devices, threads)) in enumerate(setups.items()):
                run_dir = Path(scratch) / f"{index}-{repeat}"
                results[name].append(one_run(args.config, devices, threads, args.device, args.epochs, run_dir))
    print(f"{args.config} on {args.device}, {args.epochs} epochs, median of {args.repeats} alternating repeats")
    print(f"{'setup':<30}  {'epoch s':>8}  {'wall s':>7}")
    for name, runs in results.items():
        epoch = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        print(f"{name:<30}  {epoch:>8.3f}  {wall:>7.1f}")


if __name__ == "__main__":
    main()
