"""Helpers of bench/gpu_check.sh.

python bench/gpu_same.py RUN_A RUN_B RTOL   the two runs' per-epoch training losses agree to RTOL (exit 1 if not)
python bench/gpu_same.py --jpegs DIR        write a tiny image folder of JPEGs (two classes) under DIR
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np


def losses(run: Path) -> list[float]:
    with open(run / "history.csv", newline="") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def same(a: Path, b: Path, rtol: float) -> int:
    first, second = losses(a), losses(b)
    worst = max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(first, second))
    ok = len(first) == len(second) and worst <= rtol
    print(f"losses {a.name}: {[round(v, 6) for v in first]}")
    print(f"losses {b.name}: {[round(v, 6) for v in second]}; largest relative difference {worst:.2e} (rtol {rtol})")
    return 0 if ok else 1


def jpegs(root: Path) -> int:
    """Bright squares on dark (class `square`) and dark on bright (class `inverse`), 32x32 JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 48), ("test", 16)):
        for name in ("square", "inverse"):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = rng.integers(0, 60, (32, 32, 3))
                x, y = rng.integers(4, 16, 2)
                image[y : y + 12, x : x + 12] = 220
                image = 255 - image if name == "inverse" else image
                Image.fromarray(image.astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--jpegs":
        sys.exit(jpegs(Path(sys.argv[2])))
    sys.exit(same(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])))
