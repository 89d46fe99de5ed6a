"""The run directory: config.yaml, history.csv, last.pt, best.pt, metrics.json, train.log.

Every file is written whole and atomically (temporary file, then rename), so a run
killed at any moment leaves readable files behind. A fit locks its run directory for
as long as it runs, so two fits never mix their files in one folder.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Iterator

import yaml

from .._files import check_run_name, write_text_atomic
from ..config.compose import sources_header
from ..errors import RunError, UserError
from . import checkpoint

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


LOCK_NAME = ".lock"


class RunLock:
    """An exclusive lock on a run directory, held by the fit writing it.

    `flock` on a file inside the folder: the kernel drops it when the process ends,
    however it ends (kill -9 included), so a stale lock never blocks a later fit. The
    file names its holder (pid, host, start time) for the message a second fit prints.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.handle: IO[bytes] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise a UserError naming the fit that holds it."""
        try:
            import fcntl
        except ImportError:  # Windows: no flock; the folder is not locked there
            return
        handle = open(
            self.folder / LOCK_NAME, "a+b", buffering=0
        )  # unbuffered: a full disk fails the write, not close()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().decode(errors="replace").strip() or "another process"
            handle.close()
            raise UserError(
                f"'{self.folder}' is in use by another dltrain fit ({holder}); wait for it to end, "
                f"or choose another --run-dir"
            ) from None
        self.handle = handle
        handle.truncate(0)
        handle.write(
            f"pid {os.getpid()} on {socket.gethostname()}, started {datetime.now():%Y-%m-%d %H:%M:%S}\n".encode()
        )

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the file drops the flock
            self.handle = None


def _cannot_use(path: Path, exc: OSError | ValueError, hint: str = "Choose another --run-dir") -> UserError:
    """The UserError for a run directory that cannot be created or written."""
    reasons = {
        FileExistsError: "it is a file, not a folder",
        NotADirectoryError: "a part of the path is a file",
        ValueError: "the path holds a NUL character",
    }
    reason = reasons.get(type(exc)) or (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
    return UserError(f"cannot write the run to '{path}': {reason}. {hint}")


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (None: `path` exists)."""
    missing = None
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing = folder
    return missing


class RunDir:
    """One run's folder, locked while a fit writes it. Only the main process creates or writes one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handler: logging.Handler | None = None
        self._writer = checkpoint.Writer()
        self._lock = RunLock(path)
        self._created: Path | None = None  # the top folder this fit made: removed again if it wrote nothing

    @classmethod
    def create(cls, name: str, run_dir: str | Path | None = None, root: Path = Path("runs")) -> "RunDir":
        """`run_dir`, or a new `runs/<name>/<YYYYmmdd-HHMMSS>/` (suffixed if taken), locked."""
        if run_dir is not None:
            if str(run_dir) == "":
                raise UserError("--run-dir is empty; give the folder to write the run to")
            path = Path(run_dir)
        else:
            try:
                check_run_name(name)
            except ValueError as exc:
                raise UserError(str(exc)) from None
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = root / name / stamp
            suffix = 1
            while path.exists():
                path = root / name / f"{stamp}-{suffix}"
                suffix += 1
        run = cls(path)
        try:
            run._created = _first_missing(path)
            path.mkdir(parents=True, exist_ok=True)
            run._lock.acquire()
        except (OSError, ValueError) as exc:
            run.close()
            hint = (
                "Choose another --run-dir"
                if run_dir is not None
                else "Give --run-dir, or run where a runs/ folder can be written"
            )
            raise _cannot_use(path, exc, hint) from None
        if (path / "last.pt").exists():
            run._lock.release()
            raise UserError(
                f"'{path}' already holds a run (last.pt); continue it with "
                f"`dltrain fit --resume {path}`, or choose another --run-dir"
            )
        return run

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        """The existing run directory `path` (to resume it), locked."""
        run = cls(path)
        try:
            run._lock.acquire()
        except OSError as exc:
            raise _cannot_use(path, exc, "A run is resumed in its own folder, which must be writable") from None
        return run

    def start_log(self) -> None:
        """Copy the 'dltrain' log to train.log (appending, so a resumed run continues it)."""
        self._handler = _QuietFileHandler(self.path / "train.log", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(self._handler)
        log.setLevel(logging.INFO)

    def flush(self, held: bool = True) -> None:
        """Write the checkpoints submitted (with `held`, those held back for the budget too) and wait for them;
        a failed write raises its error here."""
        self._writer.flush(held)

    def close(self) -> None:
        """Wait for checkpoints still being written (raising a write's error), stop logging and unlock;
        a folder this fit made and left empty is removed."""
        try:
            self._writer.flush()
        finally:
            self._release()

    def _release(self) -> None:
        if self._handler is not None:
            log.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        self._lock.release()
        with contextlib.suppress(OSError):
            if self._created is not None and {p.name for p in self.path.iterdir()} <= {LOCK_NAME}:
                (self.path / LOCK_NAME).unlink(missing_ok=True)
                for folder in [self.path, *self.path.parents]:  # up to the first folder that was made
                    folder.rmdir()
                    if folder == self._created:
                        break

    def write_config(self, resolved: dict[str, Any], sources: list[dict[str, str]] | None = None) -> None:
        """The merged, resolved config, opened by a comment naming the files (and hashes) it came from."""
        text = sources_header(sources or []) + yaml.safe_dump(resolved, sort_keys=False)
        try:
            write_text_atomic(self.path / "config.yaml", text)
        except OSError as exc:
            raise _cannot_use(self.path, exc) from None

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        write_csv(self.path / "history.csv", rows)

    def write_metrics(self, results: dict[str, Any]) -> None:
        write_text_atomic(self.path / "metrics.json", json.dumps(results, indent=2) + "\n")

    def save_checkpoint(self, name: str, saved: "checkpoint.Checkpoint", now: bool = False) -> None:
        """Write `name` in the background (from a detached snapshot), when within the writes' budget or `now`
        (else with the next write; `close` writes it at the latest)."""
        self._writer.submit(self.path / name, saved, now)

    @property
    def writer(self) -> "checkpoint.Writer":
        """The background writer of this run's checkpoints (to read what its writes cost)."""
        return self._writer

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Turn a failed write while training (a full disk, a folder gone read-only) into one RunError."""
        try:
            yield
        except OSError as exc:
            kept = [name for name in ("last.pt", "best.pt") if (self.path / name).exists()]
            intact = (
                (
                    f"{' and '.join(kept)} keep what was saved before, intact; when there is room again, "
                    f"continue with: dltrain fit --resume {self.path}"
                )
                if kept
                else "no checkpoint was saved yet"
            )
            where = f"'{exc.filename}'" if exc.filename else f"the run directory '{self.path}'"
            raise RunError(f"training stopped: {exc.strerror or exc} ({where}). {intact}") from None


class _QuietFileHandler(logging.FileHandler):
    """train.log: a line that cannot be written (a full disk) is dropped, not printed with a traceback."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass
