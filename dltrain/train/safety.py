"""Stopping a run without damaging it: the non-finite-loss guard, the first Ctrl-C and SIGTERM.

Both stop between steps, never inside one, and neither costs a host sync per step.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Iterator

from ..errors import Interrupted, RunError
from ..nn.metrics import Tracker
from ..reporting import Reporter

CHECK_SECONDS = 0.25


class NanGuard:
    """Stop training at a non-finite loss, before any checkpoint can store broken weights.

    It reads the tracker's running loss sum (on the device) a few times a second and
    at the end of each epoch: one host read per check, none per step. A NaN or inf loss
    makes the sum non-finite for the rest of the epoch, so a check sees any earlier bad
    step; the message names the step of that check and the last step known finite.
    """

    def __init__(self, seconds: float = CHECK_SECONDS) -> None:
        self.seconds = seconds
        self.next_check = 0.0
        self.good_step = 0
        self.run_path: Path | None = None  # the run directory whose checkpoints the message describes
        self.writes_files = False  # false under DDP ranks > 0 and `fit(write=False)`: no files to speak of

    def start_epoch(self, step: int) -> None:
        """An epoch starts after `step` steps (0, or more when resuming mid-epoch)."""
        self.good_step = step
        self.next_check = time.monotonic() + self.seconds

    def due(self) -> bool:
        return time.monotonic() >= self.next_check

    def check(self, tracker: Tracker, epoch: int, step: int) -> None:
        """Raise RunError if the loss summed up to `step` of `epoch` is not finite."""
        self.next_check = time.monotonic() + self.seconds
        total = tracker.sums["loss"].item()
        if math.isfinite(total):
            self.good_step = step
            return
        first = self.good_step + 1
        where = f"step {step}" if first == step else f"one of steps {first}-{step} (seen at step {step})"
        raise RunError(
            f"the training loss became {'nan' if math.isnan(total) else 'inf'} in epoch {epoch}, at {where}; "
            f"training stopped. {self.kept()}"
            f"Try a lower learning rate, fit.gradient_clip, or fit.precision: 32."
        )

    def kept(self) -> str:
        """What the stop leaves on disk, checked, never promised: no epoch finished means no checkpoint."""
        if not self.writes_files or self.run_path is None:
            return ""
        kept = [name for name in ("last.pt", "best.pt") if (self.run_path / name).is_file()]
        if not kept:
            return f"No checkpoint was saved in {self.run_path}: no epoch finished. "
        return (
            f"{' and '.join(kept)} in {self.run_path} keep{'s' if len(kept) == 1 else ''} the weights of "
            f"finished epochs (last.pt: the last one). "
        )


class CheckpointClock:
    """`fit.checkpoint_every`: whether a mid-epoch last.pt is due (N steps, or M minutes, since the last save)."""

    def __init__(self, steps: int | None = None, minutes: float | None = None) -> None:
        self.steps = steps
        self.seconds = minutes * 60 if minutes is not None else None
        self.saved()

    def saved(self) -> None:
        """A checkpoint was just written: count again from here."""
        self.count = 0
        self.since = time.monotonic()

    def tick(self) -> bool:
        """One more training step; True while a checkpoint is due (until `saved`)."""
        self.count += 1
        if self.steps is not None:
            return self.count >= self.steps
        return self.seconds is not None and time.monotonic() - self.since >= self.seconds


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The first Ctrl-C or SIGTERM sets `signum` (the loop finishes its step, saves, and stops);
    a second one acts at once, as usual (Ctrl-C raises KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.signum = 0
        self.previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum != 0

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for number in STOP_SIGNALS:
                self.previous[number] = signal.getsignal(number)
                signal.signal(number, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self._restore()

    def _restore(self) -> None:
        for number, previous in self.previous.items():
            default = signal.default_int_handler if number == signal.SIGINT else signal.SIG_DFL
            signal.signal(number, previous if previous is not None else default)
        self.previous = {}

    def stop(self) -> Interrupted:
        """The exception that ends the run after the checkpoint was saved (exit 130 or 143)."""
        return Interrupted(self.signum or signal.SIGINT)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._restore()


@contextlib.contextmanager
def tidy_display(reporter: Reporter) -> Iterator[None]:
    """Take down a live display when training stops by an exception, so the error is seen."""
    try:
        yield
    except BaseException:
        reporter.abort()
        raise
