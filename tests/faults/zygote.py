"""A warm parent for the fault suite: import dltrain once, then fork one `dltrain` process per request.

Starting Python and importing torch takes seconds (tens on a busy machine); forking a
parent that has already imported them takes milliseconds. Each command is still its own
process: its own pid (for real signals), exit status, stdout and stderr, running the
real console entry point. The parent never runs a tensor operation, so forking it is safe.

Protocol: one JSON object per line on stdin, {"argv", "cwd", "env", "out", "err", "pid",
"rc"}. A waiter process forks the command, writes its pid to the file `pid`, waits, and
writes its exit code to the file `rc` (negative N: killed by signal N). EOF on stdin ends
the parent; running commands go on.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from typing import Any

import dltrain.cli  # the slow import, done once


def _write(path: str, text: str) -> None:
    """Write `text` whole (temporary file, then rename), so a reader never sees half of it."""
    with open(path + ".part", "w") as handle:
        handle.write(text)
    os.replace(path + ".part", path)


def _command(request: dict[str, Any]) -> None:
    """In the forked child: become `dltrain ARGV` in `cwd` with `env`, and exit as it would."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.update(request["env"])
    for fd, name in ((1, "out"), (2, "err")):
        file = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(file, fd)
        os.close(file)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    code = 1
    try:
        sys.argv = ["dltrain", *request["argv"]]
        dltrain.cli.run()
        code = 0
    except SystemExit as exc:  # as the interpreter does: an int is the code, text is printed and means 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:  # what the interpreter would print for an uncaught exception
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve(request: dict[str, Any]) -> None:
    """Fork a waiter that forks the command, records its pid, waits, and records its exit code."""
    if os.fork() != 0:
        return
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the waiter must reap its own child
        pid = os.fork()
        if pid == 0:
            _command(request)
        _write(request["pid"], str(pid))
        _, status = os.waitpid(pid, 0)
        _write(request["rc"], str(os.waitstatus_to_exitcode(status)))
    finally:
        os._exit(0)


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped by the kernel
    for line in sys.stdin:
        _serve(json.loads(line))


if __name__ == "__main__":
    main()
