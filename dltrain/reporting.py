"""How the library tells the outside world what happens, without printing.

The trainer calls a `Reporter`; the CLI passes one that draws a rich progress bar,
Python users can pass their own or none. `step` is called every training step, so an
implementation must be cheap there: read device values (a host sync) only when it
redraws, a few times a second.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .nn.metrics import Tracker
    from .nn.model import BuiltModel

log = logging.getLogger("dltrain")


class Reporter:
    """No-op base: override what you want to show."""

    def fit_start(self, model: "BuiltModel", run_dir: Path | None, device: str, start_epoch: int, epochs: int) -> None:
        """Training is about to start."""

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        """An epoch (1-based `epoch`) of `steps` training steps starts."""

    def step(self, step: int, tracker: "Tracker") -> None:
        """Step `step` (1-based) finished. Called every step: keep it cheap."""

    def epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        """An epoch finished; `row` is its line of history.csv."""

    def abort(self) -> None:
        """The epoch ends early (Ctrl-C, non-finite loss): tidy up what `epoch_start` began."""

    def message(self, text: str) -> None:
        """Something the user should read."""
        log.info(text)

    def fit_end(self, run_dir: Path | None, results: dict[str, Any]) -> None:
        """Training finished; `results` is what metrics.json holds."""
