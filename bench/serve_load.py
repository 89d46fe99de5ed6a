"""Load on `dltrain serve` over loopback: requests/s and p50/p99 latency, batching on and off.

Trains the digits MLP and the digits CNN briefly (their configs, a few epochs), exports
each to ONNX, then serves each model four ways (PyTorch checkpoint or onnxruntime;
batching on, `--max-batch 64 --max-wait-ms 2`, or off, `--max-batch 1`) as a child
process on 127.0.0.1. At each concurrency (1, 16, 64 clients, each one instance per
request, the next sent when the last is answered) it sends at most `--requests`
requests or runs at most `--seconds`, whichever ends first, after a short warm-up.
Both servers of a model (batching on and off) run at once and are measured in turns,
`--rounds` times; the table gives the median of each cell. The clients (one raw
keep-alive connection each) run on the same machine as the server, so on a small box
they compete for the same cores: compare rows with each other, not across machines.

It also reads the server's CPU time (/proc), the one number here that other jobs on a
busy box barely move: server CPU milliseconds per request.

    python -m bench.serve_load [--requests 1000] [--seconds 4] [--rounds 3] [--out serve_load.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from dltrain import api
from dltrain.export import export
from dltrain.serve.process import running_server

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODELS = {"digits MLP": ("digits_mlp.yaml", 64), "digits CNN": ("digits_cnn.yaml", (1, 8, 8))}
CONCURRENCY = (1, 16, 64)
BATCHING = {"on": ("--max-batch", "64", "--max-wait-ms", "2"), "off": ("--max-batch", "1")}


def train(root: Path) -> dict[str, Path]:
    """Each model's checkpoint and its ONNX export."""
    files: dict[str, Path] = {}
    for name, (config, _) in MODELS.items():
        run = api.fit(CONFIGS / config, ["fit.epochs=3", "fit.device=cpu"], run_dir=root / config.split(".")[0])
        assert run.run_dir is not None
        files[f"{name}|torch"] = run.run_dir / "best.pt"
        files[f"{name}|onnxruntime"] = export(run.run_dir, "onnx").path
    return files


class Connection:
    """One keep-alive HTTP/1.1 connection, as little client work as possible (the clients share the server's cores)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Connection":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, path: str, body: bytes) -> bytes:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        response = await self.reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", response)
        if not response.startswith(b"HTTP/1.1 200") or length is None:
            raise RuntimeError(f"the server answered {response.splitlines()[0]!r}")
        return await self.reader.readexactly(int(length.group(1)))

    def close(self) -> None:
        self.writer.close()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used: unlike wall time, barely moved by other jobs on the box."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(
    port: int, pid: int, bodies: list[bytes], clients: int, requests: int, seconds: float
) -> dict[str, float]:
    """`clients` concurrent clients until `requests` are answered or `seconds` pass.

    Requests/s, p50 and p99 latency (ms), and the server's CPU milliseconds per request.
    """
    connections = [await Connection.open(port) for _ in range(clients)]
    for body in bodies[:8]:  # warm-up: the first forward passes
        await connections[0].post("/predict", body)
    latencies: list[float] = []
    sent = 0
    stop = time.perf_counter() + seconds

    async def client_loop(connection: Connection) -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() < stop:
            body = bodies[sent % len(bodies)]
            sent += 1
            started = time.perf_counter()
            await connection.post("/predict", body)
            latencies.append(time.perf_counter() - started)

    began, cpu = time.perf_counter(), cpu_seconds(pid)
    await asyncio.gather(*(client_loop(c) for c in connections))
    elapsed, cpu = time.perf_counter() - began, cpu_seconds(pid) - cpu
    for connection in connections:
        connection.close()
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "req_per_s": len(latencies) / elapsed,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "cpu_ms": cpu * 1000 / len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="most requests per measurement")
    parser.add_argument("--seconds", type=float, default=4.0, help="most seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats; the table gives medians")
    parser.add_argument("--out", type=Path, help="also write every measurement as JSON")
    args, _ = parser.parse_known_args()
    pixels = load_digits().data.astype(np.float32)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        files = train(Path(tmp))
        for key, path in files.items():
            model, runtime = key.split("|")
            samples = pixels[:256].reshape(256, *np.atleast_1d(MODELS[model][1]))
            bodies = [json.dumps({"instances": [sample.tolist()]}).encode() for sample in samples]
            with contextlib.ExitStack() as stack:  # both servers up at once, measured in turns: drift hits both
                servers = {
                    b: stack.enter_context(running_server(path, *flags, "--device", "cpu"))
                    for b, flags in BATCHING.items()
                }
                for round_ in range(args.rounds):
                    for clients in CONCURRENCY:
                        for batching, server in servers.items():
                            measured = load(
                                server.port, server.process.pid, bodies, clients, args.requests, args.seconds
                            )
                            row = {
                                "model": model,
                                "runtime": runtime,
                                "batching": batching,
                                "clients": clients,
                                "round": round_,
                                **asyncio.run(measured),
                            }
                            results.append(row)
                            print(
                                f"{model:10} {runtime:11} batching {batching:3} c={clients:2}: "
                                f"{row['req_per_s']:7.0f} req/s  p50 {row['p50_ms']:6.1f} ms  "
                                f"p99 {row['p99_ms']:6.1f} ms  server CPU {row['cpu_ms']:.2f} ms/req  "
                                f"({row['requests']} requests)",
                                flush=True,
                            )
    print()
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


def table(results: list[dict]) -> str:
    """The README's markdown table: one row per model, runtime and batching; req/s and p50/p99 per concurrency."""
    head = (
        "| model | runtime | batching | "
        + " | ".join(f"c={c}: req/s, p50/p99 ms" for c in CONCURRENCY)
        + f" | server CPU ms/req at c={CONCURRENCY[-1]} |"
    )
    lines = [head, "|" + " --- |" * (4 + len(CONCURRENCY))]
    keys = dict.fromkeys((r["model"], r["runtime"], r["batching"]) for r in results)
    for model, runtime, batching in keys:
        cells = []
        for clients in CONCURRENCY:
            runs = [
                r
                for r in results
                if (r["model"], r["runtime"], r["batching"], r["clients"]) == (model, runtime, batching, clients)
            ]
            median = {k: statistics.median(r[k] for r in runs) for k in ("req_per_s", "p50_ms", "p99_ms", "cpu_ms")}
            cells.append(f"{median['req_per_s']:.0f}, {median['p50_ms']:.1f}/{median['p99_ms']:.1f}")
        cells.append(f"{median['cpu_ms']:.2f}")
        lines.append(f"| {model} | {runtime} | {batching} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
