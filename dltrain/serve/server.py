"""Start the server: load and self-check the model, bind the port, run uvicorn (one or N processes).

Everything that can fail at start-up (a bad checkpoint, a model failing its self-check,
a port in use) fails here, before uvicorn starts, as a UserError: one message, exit 2.
On SIGTERM (or Ctrl-C) uvicorn stops accepting connections, lets the requests in
flight finish, then exits.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import socket
import sys
from typing import Callable

from ..errors import UserError
from .models import SERVE_EXTRA, ServedModel, load_model
from .options import OPTIONS_ENV, ServeOptions


def check_options(options: ServeOptions) -> None:
    """Numbers that make sense, each named by its option."""
    for name, value, least in (
        ("--workers", options.workers, 1),
        ("--max-batch", options.max_batch, 1),
        ("--max-instances", options.max_instances, 1),
        ("--port", options.port, 0),
    ):
        if value < least:
            raise UserError(f"{name} must be {least} or more; received {value}")
    for name, number in (("--max-wait-ms", options.max_wait_ms), ("--max-request-mb", options.max_request_mb)):
        if number < 0 or (name == "--max-request-mb" and number == 0):
            raise UserError(
                f"{name} must be {'positive' if name == '--max-request-mb' else '0 or more'}; received {number}"
            )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a port in use is a clear error (uvicorn would log and exit 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts need not wait
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted connections inherit it: no Nagle delays
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is already in use; stop what uses it or pick another with --port"
            ) from None
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); check --host and --port") from None
    sock.set_inheritable(True)
    return sock


def serve(options: ServeOptions, announce: Callable[[str], None] = print) -> None:
    """Serve `options.model` until SIGTERM or Ctrl-C; `announce` receives the one start-up line."""
    check_options(options)
    try:
        import uvicorn
    except ImportError:
        raise UserError(f"serving needs fastapi and uvicorn (not installed here): {SERVE_EXTRA}") from None
    from .app import create_app

    model = load_model(options.model, options.device)  # a bad model fails here, before the port is taken
    sock = bind(options.host, options.port)
    host, port = sock.getsockname()[:2]
    announce(_banner(model, options, host, port))
    common = {"log_level": "warning", "access_log": False, "timeout_graceful_shutdown": None}
    if options.workers == 1:
        config = uvicorn.Config(create_app(model, options), **common)  # type: ignore[arg-type]
        uvicorn.Server(config).run(sockets=[sock])
        return
    from uvicorn.supervisors import Multiprocess

    os.environ[OPTIONS_ENV] = json.dumps(dataclasses.asdict(options))  # each worker process reads it
    config = uvicorn.Config("dltrain.serve.app:app_from_env", factory=True, workers=options.workers, **common)  # type: ignore[arg-type]
    Multiprocess(config, sockets=[sock]).run()


def _banner(model: ServedModel, options: ServeOptions, host: str, port: int) -> str:
    batching = (
        f"batches of up to {options.max_batch} within {options.max_wait_ms:g} ms"
        if options.max_batch > 1
        else "no batching"
    )
    workers = f", {options.workers} worker processes" if options.workers > 1 else ""
    return (
        f"serving {model.name} ({model.task}, {model.runtime} on {model.info.get('device')}; {batching}{workers}) "
        f"at http://{host}:{port}  (POST /predict, /predict/files; GET /metadata, /docs)"
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m dltrain.serve MODEL [--port ...]`: the server without the dltrain CLI (and without torch for .onnx)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dltrain.serve", description=main.__doc__)
    parser.add_argument("model")
    for field in dataclasses.fields(ServeOptions):
        if field.name != "model":
            parser.add_argument("--" + field.name.replace("_", "-"), type=type(field.default), default=field.default)
    options = ServeOptions(**vars(parser.parse_args(argv)))
    try:
        serve(options, announce=lambda line: print(line, flush=True))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
