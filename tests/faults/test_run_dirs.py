"""Where a run goes: names that would escape runs/, run directories that cannot be written,
full and read-only filesystems, a disk that fills up mid-run, and two fits on one folder."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
import yaml

BAD_NAMES = {
    "dot-dot": ("../escaped", "without '/'"),
    "parent": ("..", "must be a folder name"),
    "absolute": ("/tmp/escaped-by-name", "without '/'"),
    "nul": ("a\0b", "control characters"),
    "300 characters": ("x" * 300, "at most 255 bytes"),
}


@pytest.mark.parametrize("name", BAD_NAMES, ids=list(BAD_NAMES))
def test_a_run_name_never_places_a_run_outside_runs(faults, tmp_path: Path, name: str) -> None:
    value, phrase = BAD_NAMES[name]
    config = faults.config()
    text = yaml.safe_load(config.read_text())
    text["name"] = value
    config.write_text(yaml.safe_dump(text, sort_keys=False))
    faults.run("fit", config).failed(2, "config.yaml:1", "name", phrase)
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "escaped").exists()
    assert not Path("/tmp/escaped-by-name").exists()


RUN_DIRS = {
    "empty": (lambda tmp: "", "--run-dir is empty"),
    "a file": (lambda tmp: tmp / "notes.txt", "it is a file, not a folder"),
    "under a file": (lambda tmp: tmp / "notes.txt" / "run", "a part of the path is a file"),
    "/proc": (lambda tmp: "/proc/dltrain-run", "cannot write the run to '/proc/dltrain-run'"),
    "too long": (lambda tmp: tmp / ("r" * 300), "File name too long"),
}


@pytest.mark.parametrize("case", RUN_DIRS, ids=list(RUN_DIRS))
def test_a_run_directory_that_cannot_be_made_is_one_message(faults, tmp_path: Path, case: str) -> None:
    where, phrase = RUN_DIRS[case]
    (tmp_path / "notes.txt").write_text("my notes\n")
    before = faults.snapshot(tmp_path / "notes.txt")
    faults.run("fit", faults.config(), "--run-dir", where(tmp_path)).failed(2, phrase, "--run-dir")
    faults.unchanged(before)
    assert not (tmp_path / "runs").exists()


def test_a_read_only_filesystem_is_refused_before_training(faults, mount) -> None:
    folder = mount(readonly=True)
    config = faults.config()
    faults.run("fit", config, "--run-dir", folder / "run").failed(2, "Read-only file system", "--run-dir")
    faults.run("fit", config, cwd=folder).failed(2, "Read-only file system")  # runs/ in a read-only folder


def test_a_full_filesystem_is_refused_before_training_and_leaves_nothing(faults, mount) -> None:
    folder = mount(size="256k")
    faults.fill_up(folder)
    faults.run("fit", faults.config(), "--run-dir", folder / "run").failed(2, "No space left on device")
    assert sorted(p.name for p in folder.iterdir()) == ["filler"]  # the empty run folder was removed again


def test_a_disk_filling_up_mid_run_keeps_the_checkpoints_and_leaves_no_temporary_file(faults, mount) -> None:
    folder = mount(size="2m")
    run = folder / "run"
    fit = faults.start("fit", faults.config(epochs=500, batch_size=32), "--run-dir", run)
    fit.wait_for(run / "best.pt")
    while True:  # pause it between two writes, never in the middle of one
        fit.signal(signal.SIGSTOP)
        if not any(".tmp" in p.name for p in run.iterdir()):
            break
        fit.signal(signal.SIGCONT)
    faults.fill_up(folder)
    before = faults.snapshot(run / "last.pt", run / "best.pt", run / "config.yaml")
    fit.signal(signal.SIGCONT)
    message = fit.wait().failed(1, "No space left on device", "intact", f"dltrain fit --resume {run}")
    assert "last.pt and best.pt" in message
    faults.unchanged(before)
    faults.no_temp_files(run)
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] >= 1


def test_a_second_fit_on_a_busy_run_directory_names_the_holder(faults, tmp_path: Path) -> None:
    config = faults.config(epochs=500, batch_size=32)
    first = faults.start("fit", config, "--run-dir", "run")
    first.wait_for(tmp_path / "run" / "last.pt")
    before = faults.snapshot(tmp_path / "run" / "config.yaml")
    second = faults.run("fit", config, "--run-dir", "run")
    message = second.failed(
        2, "'run' is in use by another dltrain fit", f"pid {first.pid} on {os.uname().nodename}", "started"
    )
    assert "--run-dir" in message
    faults.run("fit", "--resume", "run").failed(2, f"pid {first.pid}")  # resuming it meanwhile is refused too
    faults.unchanged(before)
    assert (tmp_path / "run" / "train.log").read_text().count("training on") == 1  # only the first fit logs there
    first.signal(signal.SIGKILL)  # the kernel drops the lock with the process, however it ends
    first.wait()
    epoch = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"]
    faults.run("fit", "--resume", "run", "--set", f"fit.epochs={epoch + 1}").succeeded()
