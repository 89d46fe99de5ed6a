"""Per-trial overhead of `dltrain tune`: warm worker trials against cold `dltrain fit` processes.

Overhead = a trial's wall time minus its epochs' own `seconds` (history.csv): start-up
(imports), data load, model build, checkpoints and final files. Same config, same
epochs: 4 cold `dltrain fit` processes, and 4 trials of one `tune --jobs 1` worker
(its first trial pays the worker's imports; the median shows the steady state).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from bench.tune_digits import REPO, _dltrain, _train_seconds

EPOCHS = 5
RUNS = 4


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        preset = REPO / "configs" / "digits_tune.yaml"
        cold = []
        for i in range(RUNS):
            run = cwd / "runs" / f"cold-{i}"
            wall = _dltrain("fit", str(preset), "--set", f"fit.epochs={EPOCHS}", "--run-dir", str(run), cwd=cwd)
            cold.append((wall - _train_seconds(run), _train_seconds(run)))
        _dltrain(
            "tune",
            str(preset),
            "--trials",
            str(RUNS),
            "--jobs",
            "1",
            "--set",
            f"fit.epochs={EPOCHS}",
            "--set",
            "tune.pruner=none",
            cwd=cwd,
        )
        warm = []
        for trial in sorted((cwd / "runs" / "digits_tune" / "tune-digits_tune").glob("trial-*")):
            seconds = json.loads((trial / "trial.json").read_text())["seconds"]
            warm.append((seconds - _train_seconds(trial), _train_seconds(trial)))
        for label, rows in (("cold `dltrain fit` process", cold), ("warm tune trial", warm)):
            over = [o for o, _ in rows]
            fraction = [o / t for o, t in rows]
            print(
                f"{label}: overhead median {statistics.median(over):.2f}s = {statistics.median(fraction):.0%} of its "
                f"training ({EPOCHS} epochs, median {statistics.median(t for _, t in rows):.2f}s); "
                f"per run {[round(o, 2) for o in over]}"
            )


if __name__ == "__main__":
    main()
