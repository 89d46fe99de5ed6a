"""`fit.num_threads`: one CPU thread for small steps (auto), a number when given, restored after."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_digits_config, write_config

from dltrain import api
from dltrain.reporting import Reporter
from dltrain.train.runtime import SMALL_STEP, cpu_threads


def test_auto_uses_one_thread_for_small_steps_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads("auto", 32, 4_810, 106) == 1  # the tutorial's MLP
    assert cpu_threads("auto", 256, SMALL_STEP, 0) is None  # a large step keeps PyTorch's default
    assert cpu_threads(3, 32, 10, 10) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_threads("auto", 32, 4_810, 106) is None  # the user's (or torchrun's) choice stands


class ThreadsSeen(Reporter):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def step(self, step: int, tracker) -> None:  # type: ignore[no-untyped-def]
        self.seen.append(torch.get_num_threads())


@pytest.mark.parametrize("setting,expected", [("auto", 1), (2, 2)])
def test_training_runs_with_the_chosen_threads_and_restores_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting, expected: int
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    reporter = ThreadsSeen()
    api.fit(write_config(tmp_path, tiny_digits_config(epochs=1, num_threads=setting)), reporter=reporter, write=False)
    assert set(reporter.seen) == {expected}
    assert torch.get_num_threads() == before
