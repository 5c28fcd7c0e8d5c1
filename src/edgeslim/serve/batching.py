"""Dynamic batching: requests that arrive close together run as one ONNX Runtime batch.

Callers ``await submit(x)`` with a tensor whose first axis is the batch (usually 1 row).
A drain task, started when the first request of a busy period arrives and ending when the queue
is empty, waits up to ``max_wait_s`` after the oldest queued request for ``max_batch`` rows,
concatenates the compatible requests (same dtype and shape after the batch axis), runs them in
a worker thread (one batch at a time) and hands each caller back its own rows. No task outlives
its busy period, so one batcher works under any event loop that calls it.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from starlette.concurrency import run_in_threadpool


@dataclass
class _Pending:
    x: np.ndarray
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple:
        return self.x.dtype, self.x.shape[1:]

    @property
    def rows(self) -> int:
        return self.x.shape[0] if self.x.ndim else 1


class BatchSizeError(RuntimeError):
    """The model did not return one output row per input row."""


class DynamicBatcher:
    """``run``: a blocking function from a batch to its output batch (same number of rows).
    ``on_batch(rows)`` is called for every run (metrics)."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int = 1, max_wait_s: float = 0.002,
                 on_batch: Callable[[int], None] | None = None):
        self.run, self.max_batch, self.max_wait_s = run, max_batch, max_wait_s
        self.on_batch = on_batch or (lambda rows: None)
        self._queue: deque[_Pending] = deque()
        self._task: asyncio.Task | None = None
        self._filled: asyncio.Event | None = None

    async def submit(self, x: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        item = _Pending(x, loop.create_future())
        self._queue.append(item)
        if self._task is None or self._task.done():
            self._filled = asyncio.Event()
            self._task = loop.create_task(self._drain())
        elif self._ready_rows() >= self.max_batch:
            self._filled.set()
        return await item.future

    def _ready_rows(self) -> int:
        """Rows queued that can join the oldest request's batch."""
        key = self._queue[0].key
        return sum(p.rows for p in self._queue if p.key == key)

    def _take(self) -> list[_Pending]:
        """The oldest request plus later compatible ones, up to max_batch rows, in arrival order."""
        first = self._queue.popleft()
        batch, rows, kept = [first], first.rows, deque()
        while self._queue:
            p = self._queue.popleft()
            if p.key == first.key and rows + p.rows <= self.max_batch:
                batch.append(p)
                rows += p.rows
            else:
                kept.append(p)
        self._queue.extendleft(reversed(kept))
        return [p for p in batch if not p.future.done()]  # a cancelled caller needs no answer

    async def _drain(self) -> None:
        while self._queue:
            deadline = self._queue[0].arrived + self.max_wait_s
            while self._ready_rows() < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self._filled.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._filled.wait(), left)
            batch = self._take()
            if batch:
                await self._run(batch)

    async def _run(self, batch: list[_Pending]) -> None:
        x = batch[0].x if len(batch) == 1 else np.concatenate([p.x for p in batch])
        rows = sum(p.rows for p in batch)
        try:
            y = await run_in_threadpool(self.run, x)
            if len(batch) > 1 and (np.ndim(y) == 0 or len(y) != rows):
                raise BatchSizeError(f"the model returned {np.shape(y)} for a batch of {rows} rows")
        except Exception as e:  # every caller of the batch learns why
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e)
            return
        self.on_batch(rows)
        start = 0
        for p in batch:
            if not p.future.done():
                p.future.set_result(y if len(batch) == 1 else y[start:start + p.rows])
            start += p.rows
