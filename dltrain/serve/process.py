"""A server in a child process, for tests and benchmarks: start it, wait for `/health`, stop it with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`python -m MODULE MODEL --port P ARGS` on 127.0.0.1, its output in `log`."""

    def __init__(
        self,
        model: str | Path,
        *args: str,
        module: str = "dltrain.serve",
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or Path(os.devnull)
        command = [
            sys.executable,
            "-m",
            module,
            *(["serve"] if module == "dltrain" else []),
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *args,
        ]
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Poll `/health` until it answers; fail with the server's output if the process ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the server did not answer /health within {timeout:g} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text() if self.log != Path(os.devnull) else ""

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait; the exit code (a kill after `timeout` is an error)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"the server did not stop within {timeout:g} s of SIGTERM:\n{self.output()}") from None


@contextmanager
def running_server(model: str | Path, *args: str, **kwargs: object) -> Iterator[ServerProcess]:
    """A healthy server for the duration of the block, stopped (SIGTERM) after it."""
    server = ServerProcess(model, *args, **kwargs)  # type: ignore[arg-type]
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()
