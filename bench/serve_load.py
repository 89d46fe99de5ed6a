"""Load on `dltrain serve` over loopback: requests/s and p50/p99 latency, batching on and off.

Trains the digits MLP and the digits CNN briefly (their configs, a few epochs), exports
each to ONNX, then serves each model four ways (PyTorch checkpoint or onnxruntime;
batching on, `--max-batch 64 --max-wait-ms 2`, or off, `--max-batch 1`) as a child
process on 127.0.0.1. At each concurrency (1, 16, 64 clients, each one instance per
request, the next sent when the last is answered) it sends at most `--requests`
requests or runs at most `--seconds`, whichever ends first, after a short warm-up.
The clients run on the same machine as the server, so on a small box they compete for
the same cores: compare rows with each other, not with other machines.

    python -m bench.serve_load [--requests 600] [--seconds 6] [--out serve_load.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
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


async def load(url: str, instances: list[list], clients: int, requests: int, seconds: float) -> dict[str, float]:
    """`clients` concurrent clients until `requests` are answered or `seconds` pass: req/s, p50, p99 (ms)."""
    latencies: list[float] = []
    sent = 0
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=clients)) as client:
        for instance in instances[:8]:  # warm-up: connections, first forward passes
            (await client.post("/predict", json={"instances": [instance]})).raise_for_status()
        stop = time.perf_counter() + seconds

        async def client_loop() -> None:
            nonlocal sent
            while sent < requests and time.perf_counter() < stop:
                instance = instances[sent % len(instances)]
                sent += 1
                started = time.perf_counter()
                response = await client.post("/predict", json={"instances": [instance]})
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "req_per_s": len(latencies) / elapsed,
            "p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600, help="most requests per measurement")
    parser.add_argument("--seconds", type=float, default=6.0, help="most seconds per measurement")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args, _ = parser.parse_known_args()
    pixels = load_digits().data.astype(np.float32)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        files = train(Path(tmp))
        for key, path in files.items():
            model, runtime = key.split("|")
            shape = MODELS[model][1]
            instances = pixels[:256].reshape(256, *np.atleast_1d(shape)).tolist()
            for batching, flags in BATCHING.items():
                with running_server(path, *flags, "--device", "cpu") as server:
                    for clients in CONCURRENCY:
                        row = {"model": model, "runtime": runtime, "batching": batching, "clients": clients,
                               **asyncio.run(load(server.url, instances, clients, args.requests, args.seconds))}
                        results.append(row)
                        print(f"{model:10} {runtime:11} batching {batching:3} c={clients:2}: "
                              f"{row['req_per_s']:7.0f} req/s  p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms"
                              f"  ({row['requests']} requests)", flush=True)
    print()
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


def table(results: list[dict]) -> str:
    """The README's markdown table: one row per model, runtime and batching; req/s and p50/p99 per concurrency."""
    head = "| model | runtime | batching | " + " | ".join(f"c={c}: req/s, p50/p99 ms" for c in CONCURRENCY) + " |"
    lines = [head, "|" + " --- |" * (3 + len(CONCURRENCY))]
    keys = dict.fromkeys((r["model"], r["runtime"], r["batching"]) for r in results)
    for model, runtime, batching in keys:
        cells = [f"{r['req_per_s']:.0f}, {r['p50_ms']:.1f}/{r['p99_ms']:.1f}" for r in results
                 if (r["model"], r["runtime"], r["batching"]) == (model, runtime, batching)]
        lines.append(f"| {model} | {runtime} | {batching} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
