"""The run directory: config.yaml, history.csv, last.pt, best.pt, metrics.json, train.log.

Every file is written whole and atomically (temporary file, then rename), so a run
killed at any moment leaves readable files behind.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from . import checkpoint
from ._files import write_text_atomic
from .compose import sources_header
from .errors import UserError

log = logging.getLogger("dltrain")


def write_csv(path: Path, rows: list[dict[str, Any]], separator: str = ",") -> None:
    """Rows of dicts as CSV (columns in order of first appearance), written atomically."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, delimiter=separator, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, out.getvalue())


class RunDir:
    """One run's folder. Only the main process creates or writes one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handler: logging.Handler | None = None

    @classmethod
    def create(cls, name: str, run_dir: str | Path | None = None, root: Path = Path("runs")) -> "RunDir":
        """`run_dir`, or a new `runs/<name>/<YYYYmmdd-HHMMSS>/` (suffixed if taken)."""
        if run_dir is not None:
            path = Path(run_dir)
            if (path / "last.pt").exists():
                raise UserError(f"'{path}' already holds a run (last.pt); continue it with "
                                f"`dltrain fit --resume {path}`, or choose another --run-dir")
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = root / name / stamp
            suffix = 1
            while path.exists():
                path = root / name / f"{stamp}-{suffix}"
                suffix += 1
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def start_log(self) -> None:
        """Copy the 'dltrain' log to train.log (appending, so a resumed run continues it)."""
        self._handler = logging.FileHandler(self.path / "train.log", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(self._handler)
        log.setLevel(logging.INFO)

    def close(self) -> None:
        if self._handler is not None:
            log.removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def write_config(self, resolved: dict[str, Any], sources: list[dict[str, str]] | None = None) -> None:
        """The merged, resolved config, opened by a comment naming the files (and hashes) it came from."""
        text = sources_header(sources or []) + yaml.safe_dump(resolved, sort_keys=False)
        write_text_atomic(self.path / "config.yaml", text)

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        write_csv(self.path / "history.csv", rows)

    def write_metrics(self, results: dict[str, Any]) -> None:
        write_text_atomic(self.path / "metrics.json", json.dumps(results, indent=2) + "\n")

    def save_checkpoint(self, name: str, payload: dict[str, Any]) -> None:
        checkpoint.save(self.path / name, payload)
