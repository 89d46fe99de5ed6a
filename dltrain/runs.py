"""`dltrain runs`: what the run directories under `runs/` hold, read from their files alone.

A run directory is a folder with a `config.yaml` beside a `history.csv`, `last.pt` or
`train.log`. Nothing here imports torch: the table comes from the plain files
(`config.yaml`, `history.csv`, `metrics.json`, `train.log`, a tune trial's `trial.json`).

Status, in the order it is decided:
- running: a lock or pid file in the folder names a live process (`*.lock`, `*.pid`,
  `lock`, `pid`: whichever a writer keeps); without any such file, a run whose log or
  history changed in the last `RECENT_S` seconds and has no end recorded;
- finished: `metrics.json` was written (training reached its end);
- pruned: a tune trial stopped by the pruner (`trial.json`);
- interrupted: the log records a Ctrl-C or SIGTERM (`Interrupted at ...`): resumable;
- failed: the log records an error, or the process died (a lock naming a dead process,
  or no write for `RECENT_S` seconds).
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

RECENT_S = 300.0  # without a lock file, a run that wrote in the last 5 minutes is taken as running
_MARKERS = ("*.lock", "*.pid", "lock", "pid", ".lock", ".pid")
_STAMP = re.compile(r"^(\d{8}-\d{6})")


@dataclass
class RunInfo:
    """One row of `dltrain runs`."""

    path: str
    name: str
    started: str
    status: str
    epochs: int
    max_epochs: int | None
    monitor: str | None
    best: float | None
    test: dict[str, float] = field(default_factory=dict)


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and any(
        (path / f).exists() for f in ("history.csv", "last.pt", "train.log")
    )


def find_runs(root: Path) -> list[Path]:
    """Every run directory at or under `root`, oldest first (tune trials included)."""
    if not root.exists():
        raise UserError(f"'{root}' does not exist; runs are written under runs/ by `dltrain fit`")
    if is_run_dir(root):
        return [root]
    found = [config.parent for config in root.rglob("config.yaml") if is_run_dir(config.parent)]
    return sorted(found, key=lambda p: (_started(p), str(p)))


def read_history(path: Path) -> list[dict[str, Any]]:
    """history.csv as rows of numbers (empty when there is none)."""
    file = path / "history.csv"
    if not file.is_file():
        return []
    with file.open(encoding="utf-8", newline="") as handle:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def read_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(text: str | None) -> Any:
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        try:
            return float(text)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return text


def _started(path: Path) -> datetime:
    """The time in the folder's name (`YYYYmmdd-HHMMSS`), else when its config was written."""
    match = _STAMP.match(path.name)
    if match:
        return datetime.strptime(match.group(1), "%Y%m%d-%H%M%S")
    try:
        return datetime.fromtimestamp((path / "config.yaml").stat().st_mtime)
    except OSError:
        return datetime.fromtimestamp(0)


def holder_alive(path: Path) -> bool | None:
    """Whether a lock/pid file in `path` names a live process; None when there is no such file."""
    markers = [f for pattern in _MARKERS for f in path.glob(pattern) if f.is_file()]
    if not markers:
        return None
    for marker in markers:
        held = _flock_held(marker) if marker.name == ".lock" else None
        if held is not None:  # the fit's `.lock` is a flock: held exactly while its fit runs (its pid stays after)
            if held:
                return True
            continue
        try:
            text = marker.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        match = re.search(r"\d+", text)
        if match and _pid_alive(int(match.group(0))):
            return True
    return False


def _flock_held(marker: Path) -> bool | None:
    """Whether another process holds a flock on `marker`; None where flock is unavailable."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        with marker.open("rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def run_status(path: Path) -> str:
    """running, finished, pruned, interrupted or failed (see the module docstring)."""
    alive = holder_alive(path)
    if alive:
        return "running"
    if (path / "metrics.json").is_file():
        return "finished"
    if _read_json(path / "trial.json").get("state") == "pruned":
        return "pruned"
    log = path / "train.log"
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    if "Interrupted at" in text:
        return "interrupted"
    if " ERROR failed:" in text:
        return "failed"
    if alive is None and _last_write(path) > time.time() - RECENT_S:
        return "running"
    return "failed"


def _last_write(path: Path) -> float:
    times = [(path / f).stat().st_mtime for f in ("train.log", "history.csv", "last.pt") if (path / f).exists()]
    return max(times, default=0.0)


def describe(path: Path, root: Path | None = None) -> RunInfo:
    """One run's row, from its files."""
    config = read_config(path)
    history = read_history(path)
    metrics = _read_json(path / "metrics.json")
    monitor = metrics.get("monitor") or ("val_loss" if history and "val_loss" in history[0] else "loss")
    best = metrics.get("best")
    if best is None and history:
        values = [row[monitor] for row in history if isinstance(row.get(monitor), (int, float))]
        best = (max if _grows(monitor) else min)(values) if values else None
    fit: dict[str, Any] = config["fit"] if isinstance(config.get("fit"), dict) else {}
    shown = path.relative_to(root) if root is not None and path.is_relative_to(root) and path != root else path
    return RunInfo(
        path=str(shown),
        name=str(config.get("name") or path.parent.name),
        started=_started(path).strftime("%Y-%m-%d %H:%M:%S"),
        status=run_status(path),
        epochs=len(history),
        max_epochs=fit.get("epochs"),
        monitor=monitor,
        best=best,
        test={k: v for k, v in (metrics.get("test") or {}).items() if isinstance(v, (int, float))},
    )


def _grows(key: str) -> bool:
    """Whether a row column improves by growing (metric registry; imported here, it pulls in torch)."""
    from .train.monitor import greater_is_better

    return greater_is_better(key)


def list_runs(root: str | Path = "runs") -> list[dict[str, Any]]:
    """`dltrain runs`: one dict per run directory under `root`."""
    root = Path(root)
    return [asdict(describe(path, root)) for path in find_runs(root)]


# --- compare -------------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (`model.layers[0].units`), as `--set` spells them."""
    if isinstance(value, dict):
        items: dict[str, Any] = {}
        for key, item in value.items():
            items.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return items
    if isinstance(value, list) and value and all(isinstance(v, (dict, list)) for v in value):
        items = {}
        for index, item in enumerate(value):
            items.update(flatten(item, f"{prefix}[{index}]"))
        return items
    return {prefix: value}


def compare(paths: list[str | Path]) -> dict[str, Any]:
    """`dltrain runs compare`: the config keys that differ, and the results side by side."""
    runs = [Path(p) for p in paths]
    for run in runs:
        if not is_run_dir(run):
            raise UserError(
                f"'{run}' is not a run directory (no config.yaml with history.csv, last.pt or train.log); "
                f"list the runs with `dltrain runs`"
            )
    configs = [flatten(read_config(run)) for run in runs]
    values = {k: [c.get(k, "<absent>") for c in configs] for k in dict.fromkeys(k for c in configs for k in c)}
    differences = {k: v for k, v in values.items() if len({json.dumps(x, sort_keys=True, default=str) for x in v}) > 1}
    infos = [describe(run) for run in runs]
    results: dict[str, list[Any]] = {
        "status": [i.status for i in infos],
        "epochs": [i.epochs for i in infos],
        "monitor": [i.monitor for i in infos],
        "best": [i.best for i in infos],
    }
    for name in dict.fromkeys(k for i in infos for k in i.test):
        results[f"test_{name}"] = [i.test.get(name) for i in infos]
    return {"runs": [str(r) for r in runs], "config": differences, "results": results}


def plot_compare(paths: list[str | Path], file: Path) -> None:
    """The runs' curves overlaid: one panel per history column, one line per run."""
    from .train.plots import _integer_ticks, _pyplot

    if file.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg"):
        raise UserError(f"--plot {file}: expected a .png, .pdf, .svg or .jpg file name")
    histories = {str(p): read_history(Path(p)) for p in paths}
    columns = list(
        dict.fromkeys(
            k for rows in histories.values() for row in rows[:1] for k in row if k not in ("epoch", "seconds")
        )
    )
    if not columns:
        raise UserError("none of these runs has a history.csv to plot yet")
    plt = _pyplot()
    width = min(len(columns), 3)
    height = -(-len(columns) // width)
    figure, axes = plt.subplots(height, width, figsize=(4.5 * width, 3.2 * height), squeeze=False)
    for ax, column in zip(axes.flat, columns):
        for label, rows in histories.items():
            points = [(r["epoch"], r[column]) for r in rows if isinstance(r.get(column), (int, float))]
            if points:
                ax.plot(*zip(*points), marker=".", label=label)
        ax.set_title(column)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(columns) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    file.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(file, dpi=100)
    plt.close(figure)


# --- tables (rich renderables; every cell is data, never markup) -----------------------


def _cell(value: Any) -> Any:
    from rich.text import Text

    if isinstance(value, float):
        return Text(f"{value:.4g}")
    return Text("" if value is None else str(value))


def runs_table(found: list[dict[str, Any]]) -> Any:
    """`dltrain runs` as a table: one row per run."""
    from rich.table import Table

    tests = list(dict.fromkeys(k for run in found for k in run["test"]))
    table = Table(title=f"{len(found)} run(s)", title_justify="left")
    for column in ("run", "started", "status", "epochs", "monitor", "best", *(f"test {k}" for k in tests)):
        table.add_column(
            column,
            justify="right" if column in ("epochs", "best") or column.startswith("test") else "left",
            no_wrap=column in ("run", "started"),
        )
    for run in found:
        epochs = f"{run['epochs']}/{run['max_epochs']}" if run["max_epochs"] else str(run["epochs"])
        table.add_row(
            *map(
                _cell,
                (
                    run["path"],
                    run["started"],
                    run["status"],
                    epochs,
                    run["monitor"],
                    run["best"],
                    *(run["test"].get(k) for k in tests),
                ),
            )
        )
    return table


def compare_tables(report: dict[str, Any]) -> list[Any]:
    """`dltrain runs compare` as two tables: the config keys that differ, then the results."""
    from rich.table import Table

    tables = []
    for title, rows in (("config differences", report["config"]), ("results", report["results"])):
        table = Table(title=title if rows else f"{title}: none", title_justify="left")
        table.add_column("key")
        for run in report["runs"]:
            table.add_column(_cell(run), justify="right")
        for key, values in rows.items():
            table.add_row(_cell(key), *map(_cell, values))
        tables.append(table)
    return tables
