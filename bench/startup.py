"""Start-up time of the CLI: wall time of commands that build nothing, against `import torch`.

Each command runs as a fresh `python` process (bytecode already cached: one unmeasured
run first), `--repeats` times, interleaved; the report gives the median and the
fastest run. `--repo PATH` measures another checkout (e.g. the main branch, for a
before/after comparison on the same machine at the same time).

    python -m bench.startup [--repeats 5] [--repo PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "dltrain --help": ["-m", "dltrain", "--help"],
    "dltrain --version": ["-m", "dltrain", "--version"],
    "dltrain schema": ["-m", "dltrain", "schema"],
    "dltrain list-models": ["-m", "dltrain", "list-models", "--json"],
    "python -c 'import torch'": ["-c", "import torch"],
}


def timed(args: list[str], repo: Path, cwd: str) -> float:
    """Seconds one `python ARGS` process takes, start to exit (it must succeed)."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(repo: Path, repeats: int) -> dict[str, list[float]]:
    """Command → its times, the commands interleaved so a busy machine slows them alike."""
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as cwd:
        for args in COMMANDS.values():
            timed(args, repo, cwd)  # compile and cache the bytecode
        for _ in range(repeats):
            for name, args in COMMANDS.items():
                times[name].append(timed(args, repo, cwd))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--repo", type=Path, default=REPO)
    args, _ = parser.parse_known_args()
    print(
        f"start-up of {args.repo} ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}), "
        f"median and fastest of {args.repeats}:"
    )
    for name, values in measure(args.repo, args.repeats).items():
        print(f"  {name:<26} {statistics.median(values):6.2f} s  (fastest {min(values):.2f} s)")


if __name__ == "__main__":
    main()
