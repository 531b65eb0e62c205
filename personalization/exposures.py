"""Exposure logging: batched, non-blocking writes to the ``vary:exposures`` Redis stream.

A decision must never wait for its own log line. :meth:`ExposureWriter.submit` puts exposures on a
bounded in-memory queue and returns at once; one background task drains the queue in batches and
writes each batch with a single pipelined round trip (``XADD`` per exposure, plus ``HSETNX`` for new
sticky assignments). Batching is what makes logging cheap: one round trip carries hundreds of
exposures.

When the queue is full the exposure is counted in :attr:`ExposureWriter.dropped` and logged — the
decision still answers. (A local spool file for full queues and Redis outages is the reliability
issue's job; the counter is the signal it builds on.)

Stream entries have one field, ``data``: the exposure as msgspec JSON. New fields get defaults, so
old entries always decode (:data:`personalization.types.EXPOSURE_DECODER`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Iterable

from redis.asyncio import Redis

from personalization.profiles import profile_key
from personalization.types import EXPOSURE_ENCODER, Exposure

__all__ = ["EXPOSURE_STREAM", "ExposureSink", "ExposureWriter", "new_exposure_id"]

EXPOSURE_STREAM = "vary:exposures"

log = logging.getLogger("vary.exposures")

_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count(1)
_STOP = object()


def new_exposure_id() -> str:
    """A process-unique id: 48 random bits per process + a counter (cheaper than uuid4 per entry)."""
    return f"{_PREFIX}{next(_COUNTER):x}"


class ExposureSink:
    """Where exposures go. Implement :meth:`submit` to add one (``typing.Protocol``-style seam)."""

    def submit(self, exposures: Iterable[Exposure], assignments: Iterable[tuple[str, str, int]]) -> None:
        raise NotImplementedError


class ExposureWriter(ExposureSink):
    """Background batch writer. Start with :meth:`start`, stop with :meth:`close` (flushes)."""

    def __init__(
        self,
        redis: Redis,
        stream: str = EXPOSURE_STREAM,
        queue_size: int = 50_000,
        batch_size: int = 500,
        maxlen: int | None = None,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._queue: asyncio.Queue[tuple[Exposure, tuple[str, str, int] | None]] = asyncio.Queue(
            maxsize=queue_size
        )
        self._batch_size = batch_size
        self._maxlen = maxlen
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.failed_batches = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="vary-exposure-writer")

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def submit(
        self, exposures: Iterable[Exposure], assignments: Iterable[tuple[str, str, int]] = ()
    ) -> None:
        """Queue exposures (and new sticky assignments) without waiting; never raises."""
        put = self._queue.put_nowait
        for exposure in exposures:
            try:
                put((exposure, None))
            except asyncio.QueueFull:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("exposure queue full: %d exposures dropped so far", self.dropped)
        for assignment in assignments:
            try:
                put((None, assignment))  # type: ignore[arg-type]
            except asyncio.QueueFull:
                self.dropped += 1

    async def _run(self) -> None:
        queue = self._queue
        while True:
            first = await queue.get()
            batch = [first]
            while len(batch) < self._batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            stop = any(item is _STOP for item in batch)
            await self._write([item for item in batch if item is not _STOP])
            for _ in batch:
                queue.task_done()
            if stop:
                return

    async def _write(self, batch: list[tuple[Exposure | None, tuple[str, str, int] | None]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        encode = EXPOSURE_ENCODER.encode
        exposures = 0
        for exposure, assignment in batch:
            if exposure is not None:
                if self._maxlen is not None:
                    pipe.xadd(self._stream, {"data": encode(exposure)}, maxlen=self._maxlen, approximate=True)
                else:
                    pipe.xadd(self._stream, {"data": encode(exposure)})
                exposures += 1
            elif assignment is not None:
                visitor_id, experience, variant = assignment
                pipe.hsetnx(profile_key(visitor_id), f"a:{experience}", variant)
        try:
            await pipe.execute()
            self.written += exposures
        except Exception:  # Redis down or slow: keep serving, count it, say it once per batch
            self.failed_batches += 1
            self.dropped += exposures
            log.exception("writing %d exposures failed", exposures)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far is written (used at shutdown and by tests)."""
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except asyncio.TimeoutError:
                log.error("exposure flush timed out with %d pending", self.pending)
            return
        while not self._queue.empty():
            batch = []
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
                self._queue.task_done()
            await self._write(batch)

    async def close(self, timeout: float = 10.0) -> None:
        """Drain the queue and stop: everything submitted before ``close`` is written (or counted)."""
        if self._task is None:
            await self.flush(timeout)
            return
        await self._queue.put(_STOP)  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(self._task, timeout)
        except asyncio.TimeoutError:
            log.error("exposure writer did not drain within %.0f s; %d left", timeout, self.pending)
        self._task = None
