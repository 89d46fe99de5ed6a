"""Atomic file writes: the one way dltrain replaces a file.

Everything is written under a temporary name beside the target and renamed onto it
only once complete, so a kill at any moment leaves the previous file intact and a
failed write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it when the block succeeds, removed otherwise.

    `suffix` keeps a file type visible to loaders that go by the name (e.g. `.onnx`).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # nothing to remove; on a read-only folder unlink says EROFS, not ENOENT
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_run_name(name: str) -> None:
    """Raise ValueError unless `name` is one folder name: a run named so stays inside `runs/`."""
    if name in ("", ".", ".."):
        raise ValueError(f"a run name must be a folder name; received {name!r}")
    if "/" in name or "\\" in name:
        raise ValueError(
            f"a run name is one folder name under runs/, without '/' or '\\'; received {name!r}. "
            f"To write a run elsewhere, use --run-dir"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"a run name cannot hold control characters (NUL, newline, ...); received {name!r}")
    if len(name.encode("utf-8")) > 255:
        raise ValueError(f"a run name is a folder name, at most 255 bytes; received {len(name.encode('utf-8'))}")


def check_output_file(path: Path, option: str, make_folder: bool = False) -> None:
    """Refuse, before any work, an output file that cannot be written: a folder, a missing or read-only
    folder (`make_folder`: a missing folder is made later, so its nearest existing parent must be writable)."""
    if path.is_dir():
        raise UserError(f"{option} '{path}' is a folder; give a file name (e.g. '{path / 'out'}' with its extension)")
    folder = path.parent
    if make_folder:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise UserError(f"cannot write '{path}': '{folder}' {what}")
    if not os.access(folder, os.W_OK):  # for root too, this sees a read-only filesystem (EROFS)
        raise UserError(
            f"cannot write '{path}': the folder '{folder}' is read-only (or not yours to write); "
            f"choose another place for {option}"
        )
