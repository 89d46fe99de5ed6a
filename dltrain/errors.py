"""The errors dltrain raises on purpose, and the exit code each maps to.

The CLI turns a `UserError` into one clear message and exit code 2 (the user can fix
it), and a `RunError` into exit code 1 (something failed while running).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Iterator


class DltrainError(Exception):
    """Base of every error dltrain raises deliberately."""

    exit_code = 1


class UserError(DltrainError):
    """Bad usage, config or input: the message says what, where, and how to fix it."""

    exit_code = 2


class DataError(UserError):
    """Data that is missing, malformed, or does not fit the model."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, or not a dltrain checkpoint."""


class RunError(DltrainError):
    """A failure while training or evaluating (not the user's input)."""


class ReportedElsewhere(DltrainError):
    """A failure another process has already reported (another rank of a distributed run).

    The CLI exits with its code and prints nothing, so the user reads the message once.
    """

    def __init__(self, exit_code: int) -> None:
        self.exit_code = exit_code
        super().__init__("")


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal, after saving: Ctrl-C (SIGINT) exits 130, SIGTERM 143 (128 + its number).

    A KeyboardInterrupt, so code that handles Ctrl-C handles a scheduler's SIGTERM alike.
    """

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__()
        self.signum = signum
        self.exit_code = 128 + signum


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM raises Interrupted (exit 143) like Ctrl-C raises KeyboardInterrupt, so files are closed cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@dataclass(frozen=True)
class Problem:
    """One config problem: its dotted path, where it is, and what is wrong."""

    path: str
    where: str
    message: str

    def __str__(self) -> str:
        head = f"{self.where}: " if self.where else ""
        path = f"{self.path}: " if self.path else ""
        return f"{head}{path}{self.message}"


class ConfigError(UserError):
    """Every problem found in a config, reported together."""

    def __init__(self, problems: list[Problem], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        count = len(problems)
        lines = [f"{source}: {count} problem{'s' if count != 1 else ''} in the config"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))
