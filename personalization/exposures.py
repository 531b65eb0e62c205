"""Exposure logging: batched, non-blocking writes to the ``vary:exposures`` Redis stream.

A decision must never wait for its own log line. :meth:`ExposureWriter.submit` puts exposures on a
bounded in-memory queue and returns at once; one background task drains the queue in batches and
writes each batch with a single pipelined round trip (``XADD`` per exposure, plus ``HSETNX`` for new
sticky assignments). Batching is what makes logging cheap: one round trip carries hundreds of
exposures.

Nothing accepted is lost: when the queue is full, or a batch cannot be written (Redis down or slow),
the batch goes to the local :class:`~personalization.spool.Spool` and is replayed in order when Redis
answers again. Each batch is written in one ``MULTI``/``EXEC`` with a marker ``vary:batch:<id>``, so a
replayed batch that had in fact reached Redis is skipped, never written twice. Without a spool
(tests, embedding) such exposures are counted in :attr:`ExposureWriter.dropped`.

Stream entries have one field, ``data``: the exposure as msgspec JSON. New fields get defaults, so
old entries always decode (:data:`personalization.types.EXPOSURE_DECODER`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Iterable

import msgspec
from redis.asyncio import Redis

from personalization.profiles import profile_key
from personalization.spool import Spool
from personalization.types import EXPOSURE_ENCODER, Exposure

__all__ = ["EXPOSURE_STREAM", "ExposureSink", "ExposureWriter", "new_exposure_id"]

EXPOSURE_STREAM = "vary:exposures"

log = logging.getLogger("vary.exposures")

_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count(1)
_STOP = object()
BATCH_MARKER = "vary:batch:"
BATCH_MARKER_TTL_S = 86_400
REPLAY_INTERVAL_S = 1.0

Item = tuple["Exposure | None", "tuple[str, str, int] | None"]


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
        spool: Spool | None = None,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._queue: asyncio.Queue[tuple[Exposure, tuple[str, str, int] | None]] = asyncio.Queue(
            maxsize=queue_size
        )
        self._batch_size = batch_size
        self._maxlen = maxlen
        self._task: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._spool = spool
        self.written = 0
        self.dropped = 0
        self.failed_batches = 0
        self.spooled = 0
        self.replayed = 0
        #: False while the last write failed: exposures are going to the spool.
        self.healthy = True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="vary-exposure-writer")
        if self._spool is not None and self._replayer is None:
            self._replayer = asyncio.create_task(self._replay_loop(), name="vary-spool-replay")

    @property
    def spool_bytes(self) -> int:
        return self._spool.size if self._spool is not None else 0

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def submit(
        self, exposures: Iterable[Exposure], assignments: Iterable[tuple[str, str, int]] = ()
    ) -> None:
        """Queue exposures (and new sticky assignments) without waiting; never raises."""
        put = self._queue.put_nowait
        overflow: list[Item] = []
        for exposure in exposures:
            try:
                put((exposure, None))
            except asyncio.QueueFull:
                overflow.append((exposure, None))
        for assignment in assignments:
            try:
                put((None, assignment))
            except asyncio.QueueFull:
                overflow.append((None, assignment))
        if overflow:
            self._spill(overflow, reason="queue full")

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

    async def _write(self, batch: list[Item]) -> None:
        """One round trip: the batch and its marker in one transaction; on failure, spool it."""
        if not batch:
            return
        batch_id = new_exposure_id()
        try:
            await self._send(batch_id, batch)
            self.written += sum(1 for exposure, _ in batch if exposure is not None)
            self.healthy = True
        except Exception as exc:  # Redis down or slow: keep serving, keep the exposures
            self.failed_batches += 1
            self.healthy = False
            self._spill(batch, reason=f"{type(exc).__name__}: {exc}", batch_id=batch_id)

    async def _send(self, batch_id: str, batch: list[Item]) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(BATCH_MARKER + batch_id, 1, ex=BATCH_MARKER_TTL_S)
        encode = EXPOSURE_ENCODER.encode
        for exposure, assignment in batch:
            if exposure is not None:
                if self._maxlen is not None:
                    pipe.xadd(self._stream, {"data": encode(exposure)}, maxlen=self._maxlen, approximate=True)
                else:
                    pipe.xadd(self._stream, {"data": encode(exposure)})
            elif assignment is not None:
                visitor_id, experience, variant = assignment
                pipe.hsetnx(profile_key(visitor_id), f"a:{experience}", variant)
        await pipe.execute()

    def _spill(self, batch: list[Item], reason: str, batch_id: str | None = None) -> None:
        exposures = sum(1 for exposure, _ in batch if exposure is not None)
        if self._spool is None:
            self.dropped += exposures
            log.error("%d exposures dropped (%s) and no spool is configured", exposures, reason)
            return
        entries = [
            b'{"x":' + EXPOSURE_ENCODER.encode(exposure) + b"}"
            if exposure is not None
            else b'{"a":' + EXPOSURE_ENCODER.encode(assignment) + b"}"
            for exposure, assignment in batch
        ]
        if self._spool.append(batch_id or new_exposure_id(), entries):
            self.spooled += exposures
            log.warning("%d exposures spooled (%s)", exposures, reason)
        else:
            self.dropped += exposures

    async def replay(self, spool: Spool | None = None) -> int:
        """Write spooled batches to Redis in order, skipping batches Redis already has; then clear the
        spool. Returns the exposures replayed; stops (keeping the spool) at the first failure.
        ``spool``: another spool to drain (one a stopped worker left behind); default: our own."""
        spool = spool or self._spool
        if spool is None or spool.size == 0:
            return 0
        replayed = 0
        for spooled in spool.batches():
            if await self._redis.exists(BATCH_MARKER + spooled.batch_id):
                continue  # it reached Redis before its reply was lost
            batch: list[Item] = []
            for raw in spooled.entries:
                record = _SPOOL_DECODER.decode(raw)
                if record.x is not None:
                    batch.append((record.x, None))
                elif record.a is not None:
                    batch.append((None, (record.a[0], record.a[1], record.a[2])))
            await self._send(spooled.batch_id, batch)
            replayed += sum(1 for exposure, _ in batch if exposure is not None)
        spool.clear()
        self.replayed += replayed
        self.written += replayed
        self.healthy = True
        log.info("replayed %d spooled exposures", replayed)
        return replayed

    async def _replay_loop(self) -> None:
        while True:
            await asyncio.sleep(REPLAY_INTERVAL_S)
            if self._spool is None or self._spool.size == 0:
                continue
            try:
                await self.replay()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("spool replay waits for Redis (%s)", type(exc).__name__)

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
        """Drain the queue and stop: everything submitted before ``close`` is written or spooled."""
        if self._replayer is not None:
            self._replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replayer
            self._replayer = None
        if self._task is None:
            await self.flush(timeout)
            if self._spool is not None:
                self._spool.close()
            return
        await self._queue.put(_STOP)  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(self._task, timeout)
        except asyncio.TimeoutError:
            log.error("exposure writer did not drain within %.0f s; %d left", timeout, self.pending)
        self._task = None
        if self._spool is not None:
            self._spool.close()  # the writer owns its spool; what is in it replays on the next start


class _SpoolRecord(msgspec.Struct, frozen=True):
    x: Exposure | None = None
    a: tuple[str, str, int] | None = None


_SPOOL_DECODER = msgspec.json.Decoder(_SpoolRecord)
