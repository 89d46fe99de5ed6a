"""The options of `dltrain serve`, as plain data (no FastAPI import: the CLI builds them first)."""

from __future__ import annotations

from dataclasses import dataclass

OPTIONS_ENV = "DLTRAIN_SERVE_OPTIONS"  # how `--workers N` hands the options to each worker process


@dataclass
class ServeOptions:
    """Everything `dltrain serve` was asked for (plain data: it travels to worker processes as JSON)."""

    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_batch: int = 64
    max_wait_ms: float = 2.0
    max_instances: int = 1024
    max_request_mb: float = 16.0
    device: str = "auto"

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)
