"""Preemption: SIGTERM mid-epoch and `fit.checkpoint_every` resume to exactly the uninterrupted run."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_config
from test_resume import _assert_same_run, _config

from dltrain import api
from dltrain.errors import ConfigError, Interrupted
from dltrain.reporting import Reporter
from dltrain.train import checkpoint


class At(Reporter):
    """At one step of one epoch, do something: send this process a signal, or fail as a kill would."""

    def __init__(self, epoch: int, step: int, action: Any) -> None:
        self.at, self.epoch, self.action = (epoch, step), 0, action

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.epoch = epoch

    def step(self, step, tracker) -> None:  # type: ignore[no-untyped-def]
        if (self.epoch, step) == self.at:
            self.action()


class Killed(Exception):
    """Stands for a kill -9: the process stops here, after whatever it had written."""


def _kill() -> None:
    raise Killed


def test_sigterm_mid_epoch_saves_and_resume_is_exact(tmp_path: Path) -> None:
    config = write_config(tmp_path, _config(epochs=2, batch_size=32))
    with pytest.raises(Interrupted) as stopped:
        api.fit(config, run_dir="cut", reporter=At(2, 10, lambda: os.kill(os.getpid(), signal.SIGTERM)))
    assert stopped.value.exit_code == 143
    saved = checkpoint.load("cut/last.pt")
    assert saved.epoch == 1 and saved.partial is not None and saved.partial["step"] == 10
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # our handler removed again
    api.fit(resume="cut")
    api.fit(config, run_dir="whole")
    _assert_same_run(torch.load("whole/last.pt", weights_only=True), torch.load("cut/last.pt", weights_only=True))


@pytest.mark.parametrize(
    "every, killed_at, saved_step",
    [({"steps": 7}, (2, 12), 7), ({"minutes": 1e-9}, (1, 5), 4)],
    ids=["steps", "minutes"],
)
def test_checkpoint_every_writes_last_pt_mid_epoch_and_resume_is_exact(
    tmp_path: Path, every: dict[str, Any], killed_at: tuple[int, int], saved_step: int
) -> None:
    config = _config(epochs=2, batch_size=32)
    config["fit"]["checkpoint_every"] = every
    with pytest.raises(Killed):
        api.fit(write_config(tmp_path, config, "every.yaml"), run_dir="cut", reporter=At(*killed_at, _kill))
    saved = checkpoint.load("cut/last.pt")
    assert saved.epoch == killed_at[0] - 1 and saved.partial is not None and saved.partial["step"] == saved_step
    api.fit(resume="cut")
    del config["fit"]["checkpoint_every"]  # saving along the way changes nothing in the result
    api.fit(write_config(tmp_path, config, "plain.yaml"), run_dir="whole")
    _assert_same_run(torch.load("whole/last.pt", weights_only=True), torch.load("cut/last.pt", weights_only=True))


@pytest.mark.parametrize("every", [{}, {"steps": 5, "minutes": 1}, {"steps": 0}, {"minutes": -1}, {"hours": 1}])
def test_checkpoint_every_takes_one_positive_interval(tmp_path: Path, every: dict[str, Any]) -> None:
    config = _config()
    config["fit"]["checkpoint_every"] = every
    with pytest.raises(ConfigError, match="fit.checkpoint_every"):
        api.check(write_config(tmp_path, config))
