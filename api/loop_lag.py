"""How late this worker's event loop runs its callbacks: the gauge behind ``/ready``'s ``loop_lag``.

Why: a stall of the event loop (a garbage collection walking a large heap, a blocking call, a long
synchronous step) delays every request the worker holds, and shows up only as a bad p99. Issue 22
found such stalls by sampling the lag under load; this keeps that sampling on in production, so an
operator sees a stalling worker in ``/ready`` without a profiler.

How: one task per worker sleeps :data:`INTERVAL_S` and records how much later than asked it woke up
(the overshoot is the time the loop was busy elsewhere). Samples of the last :data:`WINDOW_S` seconds
are kept (600 at most); ``/ready`` shows their max and p99. Cost: one wake-up every 100 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from typing import Annotated

from msgspec import Meta, Struct

__all__ = ["INTERVAL_S", "WINDOW_S", "LoopLag", "LoopLagMonitor"]

#: How often the loop is sampled.
INTERVAL_S = 0.1
#: How far back ``/ready`` looks.
WINDOW_S = 60.0


class LoopLag(Struct, frozen=True, kw_only=True):
    """Event-loop lag of this worker over the last minute (milliseconds a wake-up came late)."""

    samples: Annotated[
        int,
        Meta(description="Samples in the window (one per 100 ms while the loop runs freely; fewer when it stalls)."),
    ]
    max_ms: Annotated[float, Meta(description="The largest lag in the window, in ms.")]
    p99_ms: Annotated[float, Meta(description="The 99th percentile lag in the window, in ms.")]
    last_ms: Annotated[float, Meta(description="The most recent sample.")]


class LoopLagMonitor:
    """Samples the running loop's lag in the background (``start`` inside the loop, ``stop`` at exit)."""

    def __init__(self, interval_s: float = INTERVAL_S, window_s: float = WINDOW_S) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()  # (monotonic time, lag in seconds)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="vary-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.interval_s)
            now = time.monotonic()
            self.record(max(0.0, now - asked - self.interval_s), now)

    def record(self, lag_s: float, now: float) -> None:
        samples = self._samples
        samples.append((now, lag_s))
        horizon = now - self.window_s
        while samples and samples[0][0] < horizon:
            samples.popleft()

    def snapshot(self) -> LoopLag:
        lags = sorted(lag for _, lag in self._samples)
        if not lags:
            return LoopLag(samples=0, max_ms=0.0, p99_ms=0.0, last_ms=0.0)
        p99 = lags[math.ceil(0.99 * len(lags)) - 1]  # nearest rank
        return LoopLag(
            samples=len(lags),
            max_ms=round(lags[-1] * 1000, 3),
            p99_ms=round(p99 * 1000, 3),
            last_ms=round(self._samples[-1][1] * 1000, 3),
        )
