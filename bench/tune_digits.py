"""`dltrain tune` on the digits_tune preset: the issue's done-when run, and the per-trial overhead.

Runs, in a fresh folder: `dltrain tune configs/digits_tune.yaml --trials 20 --jobs 2`,
then `dltrain fit` of the untuned preset and of the tune's best.yaml with several
seeds (test accuracy from metrics.json). Overhead per trial is wall time minus the
epochs' own `seconds` (history.csv), as a fraction of training time: for the warm
trials (trial.json) and for the cold `dltrain fit` processes (start-up, imports, data).
Takes ~10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = (42, 1, 2)


def _dltrain(*args: str, cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dltrain", *args],
        cwd=cwd,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def _train_seconds(run: Path) -> float:
    with (run / "history.csv").open() as handle:
        return sum(float(row["seconds"]) for row in csv.DictReader(handle))


def _fits(config: Path, cwd: Path, label: str) -> tuple[list[float], list[float]]:
    """Test accuracy and overhead fraction of one cold `dltrain fit` per seed."""
    accuracies, overheads = [], []
    for seed in SEEDS:
        run = cwd / "runs" / f"{label}-{seed}"
        wall = _dltrain("fit", str(config), "--set", f"seed={seed}", "--run-dir", str(run), cwd=cwd)
        accuracies.append(json.loads((run / "metrics.json").read_text())["test"]["accuracy"])
        train = _train_seconds(run)
        overheads.append((wall - train) / train)
    return accuracies, overheads


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        preset = REPO / "configs" / "digits_tune.yaml"
        wall = _dltrain("tune", str(preset), "--trials", "20", "--jobs", "2", cwd=cwd)
        study = cwd / "runs" / "digits_tune" / "tune-digits_tune"
        trials = [json.loads(f.read_text()) for f in sorted(study.glob("trial-*/trial.json"))]
        states = {s: sum(t["state"] == s for t in trials) for s in ("complete", "pruned", "failed")}
        print(f"tune: 20 trials, 2 jobs in {wall:.0f}s: {states}")
        warm = [
            (t["seconds"] - _train_seconds(study / f"trial-{t['number']:04d}"))
            / _train_seconds(study / f"trial-{t['number']:04d}")
            for t in trials
            if t["epochs"]
        ]
        untuned, cold = _fits(preset, cwd, "untuned")
        tuned, _ = _fits(study / "best.yaml", cwd, "tuned")
        print(f"best.yaml: {(study / 'best.yaml').read_text().splitlines()[1]}")
        print(
            f"test accuracy, seeds {SEEDS}: untuned {[round(a, 4) for a in untuned]} (mean {statistics.mean(untuned):.4f}); "
            f"best.yaml {[round(a, 4) for a in tuned]} (mean {statistics.mean(tuned):.4f})"
        )
        print(
            f"overhead per trial / training time: warm trials median {statistics.median(warm):.1%} "
            f"(first trial of a worker {max(warm):.1%}); cold `dltrain fit` processes median {statistics.median(cold):.1%}"
        )


if __name__ == "__main__":
    main()
