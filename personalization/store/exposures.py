"""Exposure logging: batched, non-blocking writes to the exposure stream(s) in Redis.

A decision must never wait for its own log line. :meth:`ExposureWriter.submit` puts exposures on a
bounded in-memory queue and returns at once; one background task drains the queue in batches and
writes each batch with **one Lua script call per target stream** (:data:`WRITE_BATCH`): the script
sets the batch marker and ``XADD``s every exposure of the batch that goes to that stream (and, on a
single Redis, ``HSETNX``es the new sticky assignments), atomically. One command carrying hundreds of
exposures costs the client one packed command and the server one parse, which is why the writer
outruns a pipelined ``XADD`` loop.

Streams are partitioned by visitor (:mod:`personalization.store.partitions`; one partition — the default —
is the historical ``vary:exposures``). A batch is grouped by target stream, and each group's marker is
``colocated(stream, "batch:<id>")``, so every key of one script call shares a Redis Cluster slot. On a
cluster the visitors' profile hashes live in other slots: there the sticky assignments go as plain
``HSETNX`` commands in the same pipeline (idempotent, so replaying them is harmless).

Nothing accepted is lost: when the queue is full, or a batch cannot be written (Redis down or slow),
the batch goes to the local :class:`~personalization.store.spool.Spool` and is replayed in order when Redis
answers again. The script writes nothing when its marker already exists (``SET NX`` is its first
step), so a replayed batch that had in fact reached Redis is skipped, never written twice. Without a
spool (tests, embedding) such exposures are counted in :attr:`ExposureWriter.dropped`.

Nothing acknowledged is lost either, even to ``SIGKILL``: with a
:class:`~personalization.store.journal.Journal`, :meth:`ExposureWriter.submit` records each request's
exposures under the batch they will travel in before queueing them, and a killed worker's journal
is replayed on the next start, exactly once by the same batch markers.

Each exposure of an experience tied to a person also adds one to the person's frequency-cap counter
for it, field ``f:<experience>`` of the profile hash (:mod:`personalization.decision.frequency`): in
the same script on a single Redis (so exactly once), as a call of its own per counter on a cluster.

Once a second the writer publishes how far its exposures are all in Redis
(:mod:`personalization.store.writer_marks`); the aggregator holds events until then.

Stream entries have two fields: ``data``, the exposure as msgspec JSON (default-valued fields left
out), and ``v``, its record format (2; entries without it are format 1, which wrote every field).
New fields get defaults and unknown ones are ignored, so old entries always decode, and an older
worker decodes this one's (:mod:`personalization.store.formats`, :data:`personalization.types.EXPOSURE_DECODER`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from personalization.decision.frequency import FREQUENCY_PREFIX, buckets
from personalization.store.batch_calls import COUNT_ONE, WRITE_BATCH, WRITE_BATCH_SHA, call_batches
from personalization.store.exposure_items import SPOOL_DECODER, Item, Prepared, is_cluster
from personalization.store.journal import Journal
from personalization.store.keys import EXPOSURES, batch_marker, profile_key, stream_name
from personalization.store.partitions import partition_of
from personalization.store.recent_batches import HOLD_S, HeldWrites
from personalization.store.spool import Spool, replay_forever, replay_spool
from personalization.store.writer_marks import forget_mark, publish_mark, writer_id
from personalization.types import EXPOSURE_ENCODER, Exposure, new_exposure_id

__all__ = ["COUNT_ONE", "EXPOSURE_STREAM", "WRITE_BATCH", "WRITE_BATCH_SHA", "ExposureWriter"]

EXPOSURE_STREAM = EXPOSURES

log = logging.getLogger("vary.exposures")

_STOP = object()
BATCH_MARKER_TTL_S = 86_400
REPLAY_INTERVAL_S = 1.0



class _Group:
    """One stream's share of a batch: the script's keys and arguments, built in one pass."""

    __slots__ = ("stream", "payloads", "profiles", "fields")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.payloads: list[bytes] = []
        self.profiles: list[str] = []
        self.fields: list[str | int] = []


class ExposureWriter:
    """Background batch writer. Start with :meth:`start`, stop with :meth:`close` (flushes)."""

    def __init__(
        self,
        redis: Redis,
        stream: str = EXPOSURE_STREAM,
        queue_size: int = 50_000,
        batch_size: int = 500,
        maxlen: int | None = None,
        spool: Spool | None = None,
        partitions: int = 1,
        journal: Journal | None = None,
        hold_s: float = HOLD_S,
    ) -> None:
        """``stream`` is the base name; with ``partitions > 1`` each visitor's exposures go to
        ``stream_name(stream, partition_of(visitor), partitions)``. ``hold_s``: how long an
        acknowledged batch is kept to be sent again if the server restarts (0: not kept;
        :mod:`personalization.store.recent_batches`)."""
        self._redis = redis
        self._stream = stream
        self._partitions = max(1, partitions)
        self._streams = [stream_name(stream, p, self._partitions) for p in range(self._partitions)]
        # A cluster keeps profile hashes in other slots than the stream: assignments go outside the script.
        self._cluster = is_cluster(redis)
        self._count_one: AsyncScript | None = None  # registered on first use (cluster only)
        #: One entry per :meth:`submit` call (its prepared items; issue 22: one put and one get per
        #: request instead of one per item). ``queue_size`` bounds the *items* queued (:attr:`pending`).
        self._queue: asyncio.Queue[list[Prepared]] = asyncio.Queue()
        self._queue_size = queue_size
        self._queued = 0
        self._batch_size = batch_size
        self._maxlen = maxlen
        self._task: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()  # ends the replay loop even if a cancellation were swallowed
        self._spool = spool
        self._journal = journal
        self._held: HeldWrites[Prepared] | None = HeldWrites(redis, "exposures", hold_s) if hold_s > 0 else None
        #: The batches in the queue, oldest first, as ``[batch id, items, queue entries, opened at]``
        #: queued under it; the last one is open. A batch is closed (:meth:`_seal`) before it is sent,
        #: so the journal's records under its id are exactly what it carries.
        self._batches: deque[list[Any]] = deque([[new_exposure_id(), 0, 0, time.time()]])
        self._sending: float | None = None  # when the batch being written was opened
        self._replaying = False
        self._writer = f"{writer_id()}:{new_exposure_id()[-6:]}"  # this writer's mark
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
        if (self._spool is not None or self._held is not None) and self._replayer is None:
            self._replayer = asyncio.create_task(self._replay_loop(), name="vary-spool-replay")

    @property
    def spool_bytes(self) -> int:
        return self._spool.size if self._spool is not None else 0

    @property
    def journal_bytes(self) -> int:
        return self._journal.size if self._journal is not None else 0

    @property
    def pending(self) -> int:
        """Items (exposures and assignments) queued and not yet taken by the writer."""
        return self._queued

    def submit(
        self, exposures: Iterable[Exposure], assignments: Iterable[tuple[str, str, int]] = ()
    ) -> None:
        """Queue exposures (and new sticky assignments) without waiting; never raises. With a
        journal they are recorded there first, so a decision acknowledged after this call survives
        the process being killed (:mod:`personalization.store.journal`).

        Each item is prepared here once (:data:`Prepared`): the exposure JSON-encoded once for the
        journal and the stream, its stream and profile-hash pair computed once, and the request's
        items queued as one entry. Issue 22: submit plus the writer's share of a request (4
        exposures, 2 assignments, journal on) went from 30.9 to 25.2 µs CPU; a whole in-process
        ``POST /v1/personalize`` from 154 to 147 µs (medians of 3)."""
        items = self._prepare(exposures, assignments)
        if not items:
            return
        overflow: list[Prepared] = []
        if self._queue_size > 0 and self._queued + len(items) > self._queue_size:
            free = max(0, self._queue_size - self._queued)
            items, overflow = items[:free], items[free:]
        if items:
            batch = self._batches[-1]
            if self._journal is not None:
                self._journal.append(batch[0], [item[0] for item in items])
            self._queue.put_nowait(items)
            self._queued += len(items)
            batch[1] += len(items)
            batch[2] += 1
            if batch[1] >= self._batch_size:
                self._seal()
        if overflow:
            self._spill(overflow, reason="queue full")

    def _prepare(self, exposures: Iterable[Exposure], assignments: Iterable[tuple[str, str, int]]) -> list[Prepared]:
        """The items as :data:`Prepared` tuples, in order: exposures first, then assignments. One
        request is one visitor at one instant: its stream, profile key and counter stamp are
        looked up once, not per item."""
        encode = EXPOSURE_ENCODER.encode
        items: list[Prepared] = []
        visitor: str | None = None
        stream, profile = self._stream_of(None), ""  # profile: "" until a capped item needs it
        ts, stamp = None, ""
        for exposure in exposures:
            payload = encode(exposure)
            visitor_id, experience = exposure.visitor_id, exposure.experience
            if visitor_id != visitor:
                visitor, stream, profile = visitor_id, self._stream_of(visitor_id), ""
            if experience is None or visitor_id is None or experience.startswith("_"):
                # not frequency-capped: anonymous, no experience, or the global holdout
                items.append((b'{"x":%b}' % payload, stream, payload, None, None, None))
                continue
            if exposure.ts != ts:
                ts = exposure.ts
                day, week = buckets(ts)
                stamp = f"{day} {week}"
            profile = profile or profile_key(visitor_id)
            items.append((b'{"x":%b}' % payload, stream, payload, profile, FREQUENCY_PREFIX + experience, stamp))
        for assignment in assignments:
            visitor_id, experience, variant = assignment
            if visitor_id != visitor:
                visitor, stream, profile = visitor_id, self._stream_of(visitor_id), ""
            profile = profile or profile_key(visitor_id)
            items.append((b'{"a":%b}' % encode(assignment), stream, None, profile, f"a:{experience}", variant))
        return items

    def _prepared(self, batch: Sequence[Prepared | Item]) -> list[Prepared]:
        """``batch`` as :data:`Prepared` items; ``(exposure, assignment)`` pairs (a replayed spool,
        tests) are prepared here."""
        prepared: list[Prepared] = []
        for item in batch:
            if len(item) == 2:
                exposure, assignment = item  # type: ignore[misc]
                prepared += self._prepare(
                    () if exposure is None else (exposure,), () if assignment is None else (assignment,)
                )
            else:
                prepared.append(item)  # type: ignore[arg-type]
        return prepared

    def _seal(self) -> None:
        """Close the open batch (nothing joins it after this) and open the next one."""
        closed = self._batches[-1][0]
        self._batches.append([new_exposure_id(), 0, 0, time.time()])
        if self._journal is not None:
            self._journal.seal(closed)

    def _take_oldest(self, first: list[Prepared] | None = None) -> tuple[str, list[Prepared]]:
        """The oldest batch's id and items, taken off the queue (``first``: its first queue entry,
        already taken by the caller). The open batch is closed first when it is the oldest."""
        batch_id, items, _ = self._pop_oldest(first)
        return batch_id, items

    def _pop_oldest(self, first: list[Prepared] | None = None) -> tuple[str, list[Prepared], int]:
        """:meth:`_take_oldest`, plus how many queue entries the batch took (to mark them done)."""
        if len(self._batches) == 1:
            self._seal()
        batch_id, count, entries, _ = self._batches.popleft()
        get = self._queue.get_nowait
        parts = [first] if first is not None else []
        parts.extend(get() for _ in range(entries - len(parts)))
        items = list(chain.from_iterable(parts))
        self._queued -= count
        return batch_id, items, entries

    async def _run(self) -> None:
        queue = self._queue
        while True:
            first = await queue.get()
            if first is _STOP:
                queue.task_done()
                return
            self._sending = self._batches[0][3]
            batch_id, batch, entries = self._pop_oldest(first)
            await self._write(batch, batch_id)
            self._sending = None
            for _ in range(entries):
                queue.task_done()

    async def _write(self, batch: list[Prepared], batch_id: str) -> None:
        """One round trip: the batch with its markers, atomically per stream; on failure, spool it
        (under the same id, so the journal's copy and the spool's are one batch to Redis)."""
        if not batch:
            return
        try:
            self.written += await self._send_prepared(batch_id, batch)
            self.healthy = True
            if self._held is not None:
                self._held.add(batch_id, batch)
        except Exception as exc:  # Redis down or slow: keep serving, keep the exposures
            self.failed_batches += 1
            self.healthy = False
            self._spill(batch, reason=f"{type(exc).__name__}: {exc}", batch_id=batch_id)
        finally:
            if self._journal is not None:
                self._journal.done(batch_id)

    def _stream_of(self, visitor_id: str | None) -> str:
        if self._partitions == 1:
            return self._streams[0]
        return self._streams[partition_of(visitor_id, self._partitions)]

    async def _send(self, batch_id: str, batch: Sequence[Prepared | Item]) -> int:
        """:meth:`_send_prepared` for items in either form (a replay, tests)."""
        return await self._send_prepared(batch_id, self._prepared(batch))

    async def _send_prepared(self, batch_id: str, batch: list[Prepared]) -> int:
        """Write one batch: one script call per target stream, all in one round trip (see the
        module docstring). Safe to repeat: a stream's part already written is skipped by its marker.
        Returns the exposures written now (those already in Redis are not counted)."""
        groups: dict[str, _Group] = {}
        loose: list[tuple[str, str, str | int]] = []  # cluster only: assignments sent as HSETNX
        counts: list[tuple[str, str, str | int]] = []  # cluster only: frequency counters, one call each
        cluster = self._cluster
        for _, stream, payload, profile, field, value in batch:
            if cluster and payload is None:
                loose.append((profile, field, value))  # type: ignore[arg-type]
                continue
            group = groups.get(stream)
            if group is None:
                group = groups[stream] = _Group(stream)
            if payload is not None:
                group.payloads.append(payload)
            if profile is not None:
                if cluster:
                    counts.append((profile, field, value))  # type: ignore[arg-type]
                else:
                    group.profiles.append(profile)
                    group.fields += (field, value)  # type: ignore[arg-type]
        maxlen = "" if self._maxlen is None else str(self._maxlen)
        calls = [
            (
                2 + len(g.profiles),
                g.stream,
                batch_marker(g.stream, batch_id),
                *g.profiles,
                BATCH_MARKER_TTL_S,
                maxlen,
                len(g.payloads),
                *g.payloads,
                *g.fields,
            )
            for g in groups.values()
        ]
        written = sum(max(0, int(part)) for part in await self._call(calls, loose))
        if counts:  # after the batch's own script, so a failed batch (spooled, replayed) counts once
            await self._count(counts)
        return written

    async def _count(self, counts: list[tuple[str, str, str | int]]) -> None:
        """Cluster only: each frequency counter in its own visitor slot, concurrently. A batch replayed
        after a lost reply may count its exposures twice here (a cap errs on the side of fewer touches)."""
        if self._count_one is None:
            self._count_one = self._redis.register_script(COUNT_ONE)
        script = self._count_one
        await asyncio.gather(*(script(keys=[key], args=[field, stamp]) for key, field, stamp in counts))

    async def _call(self, calls: list[tuple[object, ...]], loose: list[tuple[str, str, str | int]]) -> list[int]:
        return await call_batches(self._redis, calls, loose, self._cluster)

    def _spill(self, batch: Sequence[Prepared | Item], reason: str, batch_id: str | None = None) -> None:
        items = self._prepared(batch)
        exposures = sum(1 for item in items if item[2] is not None)
        if self._spool is None:
            self.dropped += exposures
            log.error("%d exposures dropped (%s) and no spool is configured", exposures, reason)
            return
        entries = [item[0] for item in items]
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
        # A stream's part that reached Redis before its reply was lost has its marker
        # (batch_marker(stream, id)); the script checks it atomically and writes nothing again.

        async def write(batch_id: str, entries: list[msgspec.Raw]) -> int:
            batch: list[Prepared] = []
            for raw in entries:
                record = SPOOL_DECODER.decode(raw)
                if record.x is not None:
                    batch += self._prepare((record.x,), ())
                elif record.a is not None:
                    batch += self._prepare((), ((record.a[0], record.a[1], record.a[2]),))
            written = await self._send(batch_id, batch)
            # Held like the writer's own batches: the server that took it now (or had it already: a
            # reply that timed out, a dead worker's journal) may not have it in its AOF yet.
            if self._held is not None:
                self._held.add(batch_id, batch)
            return written

        self._replaying = True
        try:
            replayed = await replay_spool(spool, write)
        finally:
            self._replaying = False
        self.replayed += replayed
        self.written += replayed
        self.healthy = True
        log.info("replayed %d spooled exposures", replayed)
        return replayed

    @property
    def waiting_since(self) -> float | None:
        """When the batch of the oldest exposure not yet in Redis was opened (so no later than that
        exposure was queued); ``0.0`` while a spool holds or replays some (of unknown age); ``None``
        when none is waiting."""
        if self._replaying or (self._spool is not None and self._spool.size > 0):
            return 0.0
        oldest = self._batches[0]
        return self._sending if self._sending is not None else oldest[3] if oldest[1] else None

    @property
    def resent(self) -> int:
        """Exposures written again because the server restarted without them (recent_batches)."""
        return self._held.resent if self._held is not None else 0

    async def resend_if_restarted(self) -> int:
        """Send the held batches again if the server's ``run_id`` changed since the last look (a
        restart may have lost what it acknowledged), else release those it has had time to persist
        (:mod:`personalization.store.recent_batches`). Returns the exposures written again."""
        if self._held is None:
            return 0

        def keep(batch_id: str, batch: list[Prepared], exc: Exception) -> None:  # down again: to the spool
            self._spill(batch, reason=f"sent again after a restart: {type(exc).__name__}", batch_id=batch_id)

        return await self._held.resend_if_restarted(self._send_prepared, keep)

    async def _replay_loop(self) -> None:
        """Once a second: what a restarted server lost sent again, then the spool replayed."""
        async def each_second() -> None:  # the mark first: it must say "wait" before a replay begins
            await publish_mark(self._redis, self._writer, self.waiting_since)
            if self._held is not None:
                await self.resend_if_restarted()

        await replay_forever(self._spool, self.replay, interval_s=REPLAY_INTERVAL_S, logger=log, what="spool",
                             stop=self._stopping, before=each_second)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far is written (used at shutdown and by tests)."""
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except TimeoutError:
                log.error("exposure flush timed out with %d pending", self.pending)
            return
        while not self._queue.empty():
            batch_id, batch, entries = self._pop_oldest()
            for _ in range(entries):
                self._queue.task_done()
            await self._write(batch, batch_id)

    async def close(self, timeout: float = 10.0) -> None:
        """Drain the queue and stop: everything submitted before ``close`` is written or spooled."""
        if self._replayer is not None:
            # Set the stop event as well as cancel: a cancellation that lands inside the Redis client
            # at the moment its own timeout fires can come out as a TimeoutError, which the loop
            # survives; the event ends it at the next turn either way (a CI run hung here once).
            self._stopping.set()
            self._replayer.cancel()
            done, _ = await asyncio.wait((self._replayer,), timeout=timeout)
            if not done:
                log.error("spool replay did not stop within %.0f s", timeout)
            self._replayer = None
        if self._task is None:
            await self.flush(timeout)
            if self._spool is not None:
                self._spool.close()
            if self._journal is not None:
                self._journal.close()
            return
        self._queue.put_nowait(_STOP)  # type: ignore[arg-type]  # unbounded: queue_size counts items
        try:
            await asyncio.wait_for(self._task, timeout)
        except TimeoutError:
            log.error("exposure writer did not drain within %.0f s; %d left", timeout, self.pending)
        self._task = None
        left = self._spool.size if self._spool is not None else 0
        if self._spool is not None:
            self._spool.close()  # the writer owns its spool; what is in it replays on the next start
        if self._journal is not None:
            self._journal.close()
        if not left:  # all written: nothing for the aggregator to wait for
            with contextlib.suppress(Exception):
                await asyncio.wait_for(forget_mark(self._redis, self._writer), 1.0)
