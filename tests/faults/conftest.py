"""The fault-injection suite's tools: run `dltrain` as a real process and check how it fails.

Every case attacks the real command line in its own process and checks the promise the
README makes: the right exit code, one message (an `error:` line, maybe with indented
detail lines) and never a traceback, and files already on disk left byte for byte as
they were.

The `faults` fixture runs commands forked from one warm parent (tests/faults/zygote.py)
so a case costs its own work, not a fresh torch import; `fresh=True` starts a new
interpreter for faults in start-up itself. `mount` makes real small, full or read-only
filesystems (tmpfs) when the suite runs as root, and skips with the reason otherwise
(root ignores permission bits, so a chmod cannot make a folder read-only for it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml
from conftest import tiny_digits_config

REPO = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}  # tiny models: threads only contend


def tiny_config(**fit: Any) -> dict[str, Any]:
    """The suite's digits MLP (fit keys by keyword): tests/conftest's, narrower, one epoch, batches of 128."""
    config = tiny_digits_config(**{"epochs": 1, "batch_size": 128, **fit})
    config["model"]["layers"][0]["units"] = 16  # a few epochs take well under a second
    return config


def write_yaml(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Outcome:
    """How a finished `dltrain` process ended."""

    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    def succeeded(self) -> "Outcome":
        assert self.code == 0, str(self)
        assert "Traceback" not in self.stdout + self.stderr, str(self)
        return self

    def failed(self, code: int, *phrases: str) -> str:
        """Assert exit `code`, no traceback, one message on stderr holding every phrase; return the message."""
        assert self.code == code, str(self)
        assert "Traceback" not in self.stdout + self.stderr, str(self)
        message = self.stderr.strip()
        heads = [line for line in message.splitlines() if line and not line[0].isspace()]
        assert len(heads) == 1, f"expected one message on stderr\n{self}"
        for phrase in phrases:
            assert phrase in message, f"{phrase!r} not in the message\n{self}"
        return message


def _interruptible() -> None:
    """In a fresh child: Ctrl-C acts, even when pytest runs as a background job (which inherits SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Process:
    """A running `dltrain` process: its pid, for real signals, and its end."""

    def __init__(self, folder: Path, fresh: subprocess.Popen[bytes] | None = None) -> None:
        self.folder = folder
        self.fresh = fresh
        self._pid: int | None = fresh.pid if fresh else None

    @property
    def pid(self) -> int:
        while self._pid is None:
            try:
                self._pid = int((self.folder / "pid").read_text())
            except FileNotFoundError:
                time.sleep(0.005)
        return self._pid

    def signal(self, number: int) -> None:
        os.kill(self.pid, number)

    def done(self) -> bool:
        if self.fresh is not None:
            return self.fresh.poll() is not None
        return (self.folder / "rc").exists()

    def wait(self, timeout: float = 120) -> Outcome:
        deadline = time.monotonic() + timeout
        while not self.done():
            if time.monotonic() > deadline:
                self.signal(signal.SIGKILL)
                raise AssertionError(f"dltrain did not end within {timeout} s\n{self.output()}")
            time.sleep(0.01)
        code = self.fresh.returncode if self.fresh else int((self.folder / "rc").read_text())
        return Outcome(code, *self.output())

    def output(self) -> tuple[str, str]:
        if self.fresh is not None and self.fresh.poll() is not None:
            out, err = self.fresh.communicate()
            return out.decode(errors="replace"), err.decode(errors="replace")

        def read(name: str) -> str:
            path = self.folder / name
            return path.read_text(errors="replace") if path.exists() else ""

        return read("out"), read("err")

    def cpu_seconds(self) -> float:
        """CPU time the process has used (a forked one starts from zero)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_busy(self, seconds: float = 0.3, timeout: float = 120) -> None:
        """Until the process has computed for `seconds`: well inside its command, past parsing the arguments."""
        deadline = time.monotonic() + timeout
        while self.cpu_seconds() < seconds:
            assert not self.done(), f"dltrain ended before it was busy\n{self.wait()}"
            assert time.monotonic() < deadline, "dltrain never got busy"
            time.sleep(0.005)

    def wait_for_library(self, name: str, timeout: float = 120) -> None:
        """Until the process has loaded a shared library whose path holds `name` (e.g. importing torch)."""
        deadline = time.monotonic() + timeout
        while name not in Path(f"/proc/{self.pid}/maps").read_text():
            assert not self.done(), f"dltrain ended before loading {name}\n{self.wait()}"
            assert time.monotonic() < deadline, f"{name} was never loaded"
            time.sleep(0.005)

    def wait_for(self, path: Path, timeout: float = 120) -> None:
        """Until `path` exists (the process must still be running)."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert not self.done(), f"dltrain ended before {path} appeared\n{self.wait()}"
            assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
            time.sleep(0.005)


class Zygote:
    """The warm parent (see zygote.py), started on first use and ended with the session."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None

    def request(self, request: dict[str, Any]) -> None:
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("zygote.py"))],
                env={**os.environ, **ENV},
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
            )
        assert self.process.stdin is not None and self.process.poll() is None, "the fault suite's zygote died"
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=30)


class Faults:
    """What a fault case needs: start/run dltrain, snapshot files, check nothing was damaged."""

    def __init__(self, zygote: Zygote, folder: Path) -> None:
        self.zygote = zygote
        self.folder = folder  # the test's own folder: its working directory
        self.processes: list[Process] = []

    def start(
        self, *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, fresh: bool = False
    ) -> Process:
        """`dltrain ARGS` in its own process (a new interpreter when `fresh`), not waited for."""
        argv, cwd = [str(a) for a in args], cwd or self.folder
        if fresh:
            popen = subprocess.Popen(
                [sys.executable, "-m", "dltrain", *argv],
                cwd=cwd,
                env={**os.environ, **ENV, **(env or {})},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=_interruptible,
            )
            process = Process(self.folder, popen)
        else:
            box = Path(os.path.realpath(self.folder)) / f".process-{len(self.processes)}"
            box.mkdir()
            process = Process(box)
            self.zygote.request(
                {
                    "argv": argv,
                    "cwd": str(cwd),
                    "env": env or {},
                    "out": str(box / "out"),
                    "err": str(box / "err"),
                    "pid": str(box / "pid"),
                    "rc": str(box / "rc"),
                }
            )
        self.processes.append(process)
        return process

    def run(self, *args: str | Path, timeout: float = 120, **options: Any) -> Outcome:
        """`dltrain ARGS` to its end."""
        return self.start(*args, **options).wait(timeout)

    def config(self, name: str = "config.yaml", **fit: Any) -> Path:
        """The tiny digits config written to `name` (fit keys by keyword)."""
        return write_yaml(self.folder / name, tiny_config(**fit))

    @staticmethod
    def snapshot(*paths: Path) -> dict[Path, bytes | None]:
        """The bytes of each file now (None: absent), for `unchanged`."""
        return {p: p.read_bytes() if p.exists() else None for p in paths}

    @staticmethod
    def unchanged(snapshot: dict[Path, bytes | None]) -> None:
        for path, before in snapshot.items():
            now = path.read_bytes() if path.exists() else None
            assert now == before, f"{path} was {'removed' if now is None else 'changed'}"

    @staticmethod
    def no_temp_files(folder: Path) -> None:
        """No temporary file (of an atomic write) left anywhere under `folder`."""
        left = [str(p) for p in folder.rglob("*") if ".tmp" in p.name]
        assert not left, f"temporary files left behind: {left}"

    @staticmethod
    def fill_up(folder: Path) -> Path:
        """Fill the filesystem of `folder` to the last byte; returns the filler file."""
        filler = folder / "filler"
        handle = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        chunk = 1 << 16
        try:
            while chunk:
                try:
                    os.write(handle, b"\0" * chunk)
                except OSError:
                    chunk //= 2
        finally:
            os.close(handle)
        return filler

    def stop_all(self) -> None:
        for process in self.processes:
            if not process.done():
                process.signal(signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="session")
def _zygote() -> Iterator[Zygote]:
    zygote = Zygote()
    yield zygote
    zygote.close()


@pytest.fixture
def faults(_zygote: Zygote, tmp_path: Path) -> Iterator[Faults]:
    helper = Faults(_zygote, tmp_path)
    yield helper
    helper.stop_all()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of the tiny digits MLP, trained once for the session (in this process: it is not under test)."""
    from dltrain import api

    folder = tmp_path_factory.mktemp("tiny_run")
    return api.fit(write_yaml(folder / "tiny.yaml", tiny_config()), run_dir=folder / "run").run_dir / "best.pt"


def _can_mount() -> str:
    """Why this process cannot mount a tmpfs ('' when it can)."""
    if os.geteuid() != 0:
        return "needs root to mount a small or read-only tmpfs (chmod does not stop root)"
    return ""


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """`mount(size="1m", readonly=False, fill=None)`: a fresh tmpfs under tmp_path.

    `fill(path)` runs before a read-only remount, to put files there. Every mount is
    undone at teardown.
    """
    if reason := _can_mount():
        pytest.skip(reason)
    mounted: list[Path] = []

    def make(size: str = "1m", readonly: bool = False, fill: Callable[[Path], None] | None = None) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        if fill is not None:
            fill(point)
        if readonly:
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)
