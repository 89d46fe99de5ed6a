"""Reading a 1,000,000-row CSV with the `csv` source: pyarrow against Python's csv module.

    python -m bench.csv_read [--rows 1000000] [--reader both|arrow|python] [--repeats 3]

The file (written to a temporary folder, not timed) has eight numeric columns, a
categorical `soil` column of five words and a `species` target of three class names,
as the README's `csv` example. Two things are timed, best of `--repeats` (wall and CPU seconds; pyarrow reads with
threads, so its CPU time can exceed its wall time):

- `read`: the source alone (`csv_source`: the file to inputs and targets),
- `load`: `load_data`, what `fit` and `check` run (splits, one-hot encoding, tensors).

`python` is the same code with pyarrow hidden (the reader used without the `parquet`
extra). Run it with PYTHONPATH at an older checkout to time that checkout's reader.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


def write_csv(path: Path, rows: int) -> Path:
    """`rows` rows of eight numbers, a soil word and a species name; written in chunks."""
    rng = np.random.default_rng(0)
    names = ",".join([f"f{i}" for i in range(8)] + ["soil", "species"])
    soils = np.array(["clay", "sand", "loam", "peat", "silt"])
    species = np.array(["setosa", "versicolor", "virginica"])
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(names + "\n")
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            numbers = rng.normal(size=(n, 8)).round(4).astype(str)
            cells = np.column_stack([numbers, soils[rng.integers(0, 5, n)], species[rng.integers(0, 3, n)]])
            handle.write("\n".join(",".join(row) for row in cells) + "\n")
    return path


@contextmanager
def without_pyarrow(hide: bool) -> Iterator[None]:
    """Make `import pyarrow` fail inside the block (as on an install without the extra)."""
    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "pyarrow"}
    if hide:
        for name in saved:
            del sys.modules[name]
        sys.modules["pyarrow"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if hide:
            del sys.modules["pyarrow"]
            sys.modules.update(saved)


def best(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """The shortest wall time and the shortest CPU time (all threads) of `repeats` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reader", choices=["both", "arrow", "python"], default="both")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv if argv is not None else [])

    from dltrain.data import load_data
    from dltrain.data.tabular import csv_source
    from dltrain.schema.data import CsvParams

    with tempfile.TemporaryDirectory() as folder:
        path = write_csv(Path(folder) / "table.csv", args.rows)
        params = CsvParams(source="csv", path=path, target="species", normalize="standardize")
        size = path.stat().st_size / 2**20
        print(f"{args.rows:,} rows, {size:.0f} MiB; best of {args.repeats}")
        readers = ["arrow", "python"] if args.reader == "both" else [args.reader]
        results = {}
        for reader in readers:
            with without_pyarrow(reader == "python"):
                read = best(lambda: csv_source(params), args.repeats)
                load = best(lambda: load_data(params, "classification", 0.2), args.repeats)
            results[reader] = (read, load)
            print(
                f"{reader:>7}: read {read[0]:6.2f} s (cpu {read[1]:6.2f} s)   "
                f"load {load[0]:6.2f} s (cpu {load[1]:6.2f} s)   {args.rows / load[0]:,.0f} rows/s"
            )
        if len(results) == 2:
            (ar, al), (pr, pl) = results["arrow"], results["python"]
            print(f"pyarrow: read {pr[0] / ar[0]:.1f}x, load {pl[0] / al[0]:.1f}x faster (wall)")


if __name__ == "__main__":
    main(sys.argv[1:])
