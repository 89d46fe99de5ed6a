"""Dynamic batching: requests that arrive together run as one forward pass.

Requests queue their raw samples; one loop takes what has arrived, runs the model once
on up to `max_batch` samples (in a worker thread, so the event loop keeps accepting
requests), and hands each request its rows. While one batch runs the next one fills,
so under load batches form by themselves. Only when the last batch held several
requests (there is load) does the loop also wait up to `max_wait` for more to fill
the batch: a lone client never pays that wait. `max_batch=1` turns batching off: every request runs alone.
A request larger than `max_batch` is never split; it runs as a batch of its own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Pending:
    x: np.ndarray  # (n, *sample)
    done: asyncio.Future[np.ndarray]


class Batcher:
    """Collects requests into batches of at most `max_batch` samples and runs `scores` on them."""

    def __init__(self, scores: Callable[[np.ndarray], np.ndarray], max_batch: int, max_wait_s: float) -> None:
        self.scores = scores
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.pending: deque[Pending] = deque()
        self.arrived = asyncio.Event()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.task: asyncio.Task[None] | None = None
        self.batches = 0  # counts for /metadata: how well batching works
        self.samples = 0
        self.loaded = False  # the last batch held more than one request

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """After the server has drained its requests: stop the loop and the model thread."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.executor.shutdown(wait=True)

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """The model's scores for the samples `x`, batched with whatever else has arrived."""
        item = Pending(x, asyncio.get_running_loop().create_future())
        self.pending.append(item)
        self.arrived.set()
        return await item.done

    def _queued(self) -> int:
        return sum(len(p.x) for p in self.pending)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.pending:
                self.arrived.clear()
                await self.arrived.wait()
            deadline = loop.time() + (self.max_wait_s if self.loaded else 0.0)
            while self._queued() < self.max_batch and (left := deadline - loop.time()) > 0:
                self.arrived.clear()
                try:
                    await asyncio.wait_for(self.arrived.wait(), left)
                except TimeoutError:
                    break
            batch = self._take()
            self.loaded = len(batch) > 1
            await self._run(loop, batch)

    def _take(self) -> list[Pending]:
        """The oldest requests that fit in one batch (at least one)."""
        batch = [self.pending.popleft()]
        rows = len(batch[0].x)
        while self.pending and rows + len(self.pending[0].x) <= self.max_batch:
            batch.append(self.pending.popleft())
            rows += len(batch[-1].x)
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[Pending]) -> None:
        x = batch[0].x if len(batch) == 1 else np.concatenate([p.x for p in batch])
        try:
            out = await loop.run_in_executor(self.executor, self.scores, x)
        except Exception as exc:  # the model failed: every request of the batch gets the error
            for p in batch:
                if not p.done.done():
                    p.done.set_exception(exc)
            return
        self.batches += 1
        self.samples += len(x)
        start = 0
        for p in batch:
            if not p.done.done():  # the client may have gone
                p.done.set_result(out[start : start + len(p.x)])
            start += len(p.x)
