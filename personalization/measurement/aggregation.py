"""Exact, replay-safe experiment aggregates: a consumer group over the exposure and event streams.

Results pages need counts over millions of exposures and events; reading raw stream entries per
request would not scale, and approximate counters would not be *exact*. So one consumer group
(default ``vary-aggregate``) folds every stream entry, once, into small per-experience hashes, and
:mod:`personalization.measurement.results` turns those sums into statistics.

The streams may be split into ``partitions`` by visitor (:mod:`personalization.store.partitions`:
``vary:exposures:{p}`` / ``vary:events:{p}``); every consumer reads all of them, so any number of
consumers — threads of one process or many processes — share the work, and a visitor's exposures
and events always sit in partitions with the same number.

This module is the consumer: it reads the streams and decides *when* an entry may be processed.
How an entry is then counted exactly once (three steps, each in one hash slot, safe under crashes
and redelivery) is :mod:`personalization.measurement.aggregate_steps`; what it counts for (the
attribution rules, goals, dimensions, journey aggregates) is
:mod:`personalization.measurement.attribution`; the keys are :mod:`personalization.store.keys`.

Ordering across the two streams
-------------------------------
Both streams are read together (one ``XREADGROUP``; one per partition on a cluster). Exposures
are processed as soon as they are read; events wait until every exposure that could precede them
has been *processed* (all three steps) by the group: an event that reached partition ``p`` at time
``t`` is released once (a) this consumer has read exposure partition ``p`` past ``t +
exposure_grace_s`` (or read it to its end) and (b) ``XPENDING`` of that partition shows no exposure
up to then still in flight at another consumer (the visitor's exposures are all in partition
``p``). ``exposure_grace_s`` covers the exposure writer's in-memory queue (an exposure is decided
before, but written after, the click it caused).
(c) every exposure writer's mark (:mod:`personalization.store.writer_marks`, read before the streams)
says its exposures decided before ``t + exposure_grace_s`` are all written: after a Redis outage
the writers' spools replay for a while, and an event released before its exposure counts nowhere.
An event held longer than ``max_hold_s`` is released anyway. Held events stay in the PEL, so a
crashed consumer re-reads them (its own PEL on start; other consumers' via ``XAUTOCLAIM`` after
``claim_idle_ms``).

Cluster safety: every call names keys of one slot. Reads, ``XACK``, ``XPENDING`` and ``XAUTOCLAIM``
name one stream; a partition's two streams share the tag ``{p}``. On a single node
(``cluster=False``) the streams are read with one blocking ``XREADGROUP``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from personalization.measurement.aggregate_steps import (
    DEDUPE_TTL_S,
    STATE_TTL_S,
    AggregateSteps,
    Entry,
    entry_ms,
    text,
)
from personalization.measurement.attribution import (
    DEFAULT_WINDOW_S,
    event_record,
    exposure_record,
)
from personalization.measurement.events import Event
from personalization.measurement.goals import GoalPolicy
from personalization.measurement.stored_events import STORED_EVENT_DECODER, UnknownEventKind
from personalization.store.keys import EVENTS, EXPOSURES, slot_tag
from personalization.store.partitions import all_streams
from personalization.store.writer_marks import complete_until
from personalization.types import EXPOSURE_DECODER, Exposure

__all__ = ["CLUSTER_POLL_MS", "DEFAULT_GROUP", "Aggregator"]

log = logging.getLogger("vary.aggregation")

DEFAULT_GROUP = "vary-aggregate"
#: How long a cluster consumer waits before polling the partitions again when all were empty.
CLUSTER_POLL_MS = 100


class _Held:
    """An event read but not yet released (waiting for exposures that may precede it)."""

    __slots__ = ("entry_id", "stream", "partition", "event", "t", "since")

    def __init__(self, entry_id: str, stream: str, partition: int, event: Event, t: float, since: float) -> None:
        self.entry_id = entry_id
        self.stream = stream
        self.partition = partition
        self.event = event
        self.t = t
        self.since = since


class Aggregator:
    """One consumer of the ``vary-aggregate`` group over every partition of both streams. Run several
    (distinct ``consumer`` names, any number of processes) to share the work; totals stay exact.

    ``partitions`` is the number of stream partitions the writers use
    (:func:`~personalization.store.partitions.all_streams`). ``cluster`` (default: whether ``redis`` is a
    cluster client) makes every call single-slot: streams are read one partition per
    ``XREADGROUP`` (pipelined, polled every :data:`CLUSTER_POLL_MS` when idle, since one blocking
    read cannot span nodes) and step-1 chunks hold one slot's visitors. On a single node the
    streams are read with one blocking ``XREADGROUP`` and chunks mix visitors.

    Results integrity (:mod:`personalization.measurement.goals`): ``goal_policy`` returns the goals
    each experience counts (``None``, or no callable: every goal counts — the serving process and
    ``vary aggregate`` always pass one); ``max_conversions_per_minute`` > 0 caps the conversions and
    purchases counted per visitor, experience and minute and counts one survey answer per metric,
    visitor, experience and day. What is not counted lands in the experience's ``discarded``
    counts (``discarded:<reason>`` in its ``all`` hash), never silently dropped.

    Counters: ``processed`` (entries counted), ``duplicates`` (already counted, skipped),
    ``skipped`` (undecodable entries, acknowledged and dropped), ``failed`` (the server could not run
    a step; the entry stays pending and is retried after ``claim_idle_ms``), ``poisoned`` (the entry's
    own call was refused; dead-lettered and acknowledged, the rest of the round goes on).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        group: str = DEFAULT_GROUP,
        consumer: str,
        attribution_window_s: float | Callable[[str], float] = DEFAULT_WINDOW_S,
        batch: int = 500,
        exposure_grace_s: float = 2.0,
        max_hold_s: float = 600.0,
        writer_dead_s: float = 30.0,
        claim_idle_ms: int = 300_000,
        dedupe_ttl_s: int = DEDUPE_TTL_S,
        state_ttl_s: int = STATE_TTL_S,
        exposure_stream: str = EXPOSURES,
        event_stream: str = EVENTS,
        partitions: int = 1,
        cluster: bool | None = None,
        goal_policy: Callable[[], GoalPolicy | None] | None = None,
        max_conversions_per_minute: int = 0,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self._redis = redis
        self.group = group
        self.consumer = consumer
        self._window = attribution_window_s
        self.batch = batch
        self.exposure_grace_s = exposure_grace_s
        self.max_hold_s = max_hold_s
        self.writer_dead_s = writer_dead_s
        self._reachable_since = 0.0  # since when this consumer has had Redis (writer marks' deadline)
        self._written: float | None = None  # the writer marks' time, read before the last read
        self.claim_idle_ms = claim_idle_ms
        self.partitions = partitions
        self.cluster = isinstance(redis, RedisCluster) if cluster is None else cluster
        self._xstreams = all_streams(exposure_stream, partitions)
        self._estreams = all_streams(event_stream, partitions)
        self._streams = [*self._xstreams, *self._estreams]
        self._partition = {s: p for p, s in enumerate(self._xstreams)}
        self._partition.update({s: p for p, s in enumerate(self._estreams)})
        self._max_held = 20 * batch
        self._held: dict[tuple[str, str], _Held] = {}
        self._ready = False
        self._recovered = False
        self._max_event_s = [0.0] * partitions
        self._frontier = [0.0] * partitions
        self._steps = AggregateSteps(
            redis, group=group, cluster=self.cluster, dedupe_ttl_s=dedupe_ttl_s, state_ttl_s=state_ttl_s
        )
        self.skipped = 0
        #: Events of a kind this version does not know (a newer version wrote them), acknowledged
        #: and not counted; not poison: a rolling upgrade makes them (docs/operations.md).
        self.unknown_kinds = 0
        self._unknown_seen: set[str] = set()
        self._goal_policy = goal_policy
        self._policy: tuple[GoalPolicy | None, bytes] = (None, b"")
        self._steps.max_rate = max(0, int(max_conversions_per_minute))

    @property
    def processed(self) -> int:
        """Entries counted."""
        return self._steps.processed

    @property
    def duplicates(self) -> int:
        """Entries already counted, skipped."""
        return self._steps.duplicates

    @property
    def failed(self) -> int:
        """Entries whose script failed; they stay pending and are retried."""
        return self._steps.failed

    @property
    def poisoned(self) -> int:
        """Entries refused for a fault of their own (dead-lettered to ``vary:agg:dead``, acknowledged)."""
        return self._steps.poisoned

    @property
    def streams(self) -> list[str]:
        """Every stream this consumer reads: the exposure partitions, then the event partitions."""
        return list(self._streams)

    # ------------------------------------------------------------------------------ setup

    async def ensure_groups(self) -> None:
        """Create the group on every stream (``MKSTREAM``, from id 0); an existing group is kept."""
        for stream in self._streams:
            try:
                await self._redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _setup(self) -> None:
        if not self._ready:
            self._reachable_since = time.time()
            await self.ensure_groups()
            await self._steps.load_scripts()
            self._ready = True

    @property
    def held(self) -> int:
        """Events read but waiting for the exposures that may precede them."""
        return len(self._held)

    def window_for(self, experience: str) -> float:
        window = self._window
        return float(window(experience) if callable(window) else window)

    # ------------------------------------------------------------------------------ reading

    def _empty(self) -> dict[str, list[tuple[str, dict]]]:
        return {stream: [] for stream in self._streams}

    async def _read(self, streams: dict[str, str], block_ms: int | None) -> dict[str, list[tuple[str, dict]]]:
        """``XREADGROUP`` of ``streams`` (name → id): one call on a single node; on a cluster one call
        per hash tag (a partition's two streams share ``{p}``), pipelined, without ``BLOCK``."""
        out = self._empty()
        if not self.cluster:
            replies = [
                await self._redis.xreadgroup(self.group, self.consumer, streams, count=self.batch, block=block_ms)
            ]
        else:
            by_tag: dict[str, dict[str, str]] = {}
            for stream, start in streams.items():
                by_tag.setdefault(slot_tag(stream), {})[stream] = start
            pipe = self._redis.pipeline(transaction=False)
            for part in by_tag.values():
                pipe.xreadgroup(self.group, self.consumer, part, count=self.batch)
            replies = await pipe.execute()
            if block_ms and not any(replies):
                await asyncio.sleep(min(block_ms, CLUSTER_POLL_MS) / 1000.0)
        deleted: dict[str, list[str]] = {}
        for response in replies:
            if not response:
                continue
            resp3 = isinstance(response, dict)  # RESP3: {stream: [[(id, fields), ...]]}
            items: Iterable[Any] = response.items() if resp3 else response
            for stream, entries in items:
                if resp3:
                    entries = entries[0] if entries else []
                name = text(stream)
                out[name] = [(text(eid), fields) for eid, fields in entries if fields is not None]
                gone = [text(eid) for eid, fields in entries if fields is None]
                if gone:  # pending entries trimmed from the stream: nothing to count, stop tracking them
                    deleted[name] = gone
        for name, ids in deleted.items():
            await self._redis.xack(name, self.group, *ids)
        return out

    async def _recover_own_pending(self) -> dict[str, list[tuple[str, dict]]]:
        """Entries delivered to this consumer name before a restart and never acknowledged."""
        found = self._empty()
        cursors = {stream: "0" for stream in self._streams}
        while cursors:
            got = await self._read(dict(cursors), None)
            for stream in list(cursors):
                entries = got.get(stream, [])
                if not entries:
                    del cursors[stream]
                    continue
                found[stream].extend(entries)
                cursors[stream] = entries[-1][0]
        return found

    async def claim_stale(self) -> int:
        """``XAUTOCLAIM`` entries idle for ``claim_idle_ms`` at any consumer (a crashed one) on every
        partition and process them; returns how many were processed. An entry its dead owner had
        taken part-way through the steps is completed from its stored outcome, so it counts once."""
        await self._setup()
        claimed = self._empty()
        for stream in self._streams:
            start = "0-0"
            while True:
                reply = await self._redis.xautoclaim(
                    stream, self.group, self.consumer, self.claim_idle_ms, start_id=start, count=self.batch
                )
                start = text(reply[0])
                claimed[stream].extend((text(eid), f) for eid, f in reply[1] if f is not None)
                if start == "0-0":
                    break
        if not any(claimed.values()):
            return 0
        caught_up = [False] * self.partitions
        return await self._process(claimed, caught_up=caught_up, read_at=time.time())

    async def hand_back(self) -> int:
        """On a graceful stop: every entry this consumer read and did not acknowledge (events held for
        late exposures, a batch cut short) is marked idle for :attr:`claim_idle_ms` (``XCLAIM`` to
        itself with ``IDLE``), so the next :meth:`claim_stale` of any consumer — another live one, or
        this process's successor as it starts — takes it at once instead of ``claim_idle_ms`` later.
        Nothing is acknowledged or dropped here. Returns how many entries were handed back."""
        handed = 0
        for stream in self._streams:
            start = "-"
            while True:
                rows = await self._redis.xpending_range(
                    stream, self.group, min=start, max="+", count=self.batch, consumername=self.consumer
                )
                if not rows:
                    break
                ids = [row["message_id"] for row in rows]
                await self._redis.xclaim(
                    stream, self.group, self.consumer, 0, ids, idle=self.claim_idle_ms, justid=True
                )
                handed += len(ids)
                if len(rows) < self.batch:
                    break
                start = "(" + text(ids[-1])
        if handed:
            log.info("aggregation: %d unacknowledged entries handed back for another consumer to claim", handed)
        return handed

    # ------------------------------------------------------------------------------ processing

    async def run_once(self, block_ms: int = 0) -> int:
        """Read one batch of each stream, count it, and return how many entries were processed
        (duplicates included). ``block_ms = 0`` does not block (unlike Redis's ``BLOCK 0``).

        The first call also re-reads this consumer's own unacknowledged entries (a restart)."""
        await self._setup()
        entries = self._empty()
        if not self._recovered:
            entries = await self._recover_own_pending()
            self._recovered = True
        streams = {stream: ">" for stream in self._xstreams}
        if len(self._held) < self._max_held:
            streams.update({stream: ">" for stream in self._estreams})
        # Before the read: what it finds then includes every exposure the marks say is written.
        self._written = await complete_until(self._redis, self._reachable_since, self.writer_dead_s)
        read_at = time.time()
        fresh = await self._read(streams, block_ms if block_ms > 0 else None)
        for stream, got in fresh.items():
            entries[stream].extend(got)
        caught_up = []
        for p, stream in enumerate(self._xstreams):
            got = fresh[stream]
            caught_up.append(len(got) < self.batch)
            if got and not caught_up[p]:
                self._frontier[p] = (entry_ms(got[-1][0]) - 1) / 1000.0
        return await self._process(entries, caught_up=caught_up, read_at=read_at)

    async def _process(
        self, entries: dict[str, list[tuple[str, dict]]], *, caught_up: list[bool], read_at: float
    ) -> int:
        done = 0
        self._steps.goal_policy = self._encoded_policy()
        # Exposures first, oldest first.
        exposures: list[tuple[str, str, Exposure]] = []
        poison: dict[str, list[str]] = {}
        newer: dict[str, list[str]] = {}  # events of kinds this version does not know
        for stream in self._xstreams:
            for entry_id, fields in entries[stream]:
                try:
                    exposures.append((stream, entry_id, EXPOSURE_DECODER.decode(_field(fields))))
                except (msgspec.DecodeError, KeyError) as exc:
                    log.error("undecodable exposure %s: %s", entry_id, exc)
                    poison.setdefault(stream, []).append(entry_id)
        now = time.monotonic()
        for stream in self._estreams:
            p = self._partition[stream]
            for entry_id, fields in entries[stream]:
                if (stream, entry_id) in self._held:
                    continue
                try:  # tolerant: a newer version's fields are ignored, its new kinds skipped (stored_events.py)
                    event = STORED_EVENT_DECODER.decode(_field(fields))
                except UnknownEventKind as exc:
                    self._unknown_kind(exc.kind)
                    newer.setdefault(stream, []).append(entry_id)
                    continue
                except (msgspec.DecodeError, KeyError) as exc:
                    log.error("undecodable event %s: %s", entry_id, exc)
                    poison.setdefault(stream, []).append(entry_id)
                    continue
                t = entry_ms(entry_id) / 1000.0
                self._max_event_s[p] = max(self._max_event_s[p], t)
                self._held[(stream, entry_id)] = _Held(entry_id, stream, p, event, t, now)
        if poison or newer:  # before XPENDING below, so they do not hold events
            pipe = self._redis.pipeline(transaction=False)
            for stream, ids in [*poison.items(), *newer.items()]:
                pipe.xack(stream, self.group, *ids)
            await pipe.execute()
            bad = sum(len(ids) for ids in poison.values())
            self.skipped += bad
            done += bad + sum(len(ids) for ids in newer.values())
        exposures.sort(key=lambda item: (item[2].ts, item[1]))
        items = [self._exposure_entry(stream, eid, x) for stream, eid, x in exposures]
        pending_min = await self._steps.run(items, self._xstreams)
        done += len(items)
        # Which held events can no longer be preceded by an exposure we have not processed? A
        # visitor's exposures and events share a partition number, so each partition has its own.
        frontier = [
            max(read_at, self._max_event_s[p]) if caught_up[p] else self._frontier[p]
            for p in range(self.partitions)
        ]
        for p, pending in pending_min.items():
            frontier[p] = min(frontier[p], (pending - 1) / 1000.0)
        if self._written is not None:  # no exposure decided before it is still on its way
            frontier = [min(f, self._written) for f in frontier]
        grace = self.exposure_grace_s
        release = [
            h for h in self._held.values()
            if h.t + grace <= frontier[h.partition] or now - h.since > self.max_hold_s
        ]
        for h in release:
            if not (h.t + grace <= frontier[h.partition]):
                log.warning("event %s held %.0f s waiting for exposures; released", h.entry_id, now - h.since)
            del self._held[(h.stream, h.entry_id)]
        release.sort(key=lambda h: (h.event.ts or h.t, h.entry_id))
        items = [self._event_entry(h.stream, h.entry_id, h.event) for h in release]
        await self._steps.run(items, [])
        done += len(items)
        return done

    def _unknown_kind(self, kind: str) -> None:
        """Count an event of a kind this version does not know; log each kind once (a rolling
        upgrade writes many of them, and they are expected, hence a warning, not an error)."""
        self.unknown_kinds += 1
        if kind not in self._unknown_seen and len(self._unknown_seen) < 64:
            self._unknown_seen.add(kind)
            log.warning("skipping events of kind %.64r: unknown to this version (a newer one wrote them?)", kind)

    def _encoded_policy(self) -> bytes:
        """The goal policy of this round, encoded once per policy object (``b""``: count every goal)."""
        policy = self._goal_policy() if self._goal_policy is not None else None
        if policy is not self._policy[0]:
            self._policy = (policy, policy.encoded() if policy is not None else b"")
        return self._policy[1]

    def _exposure_entry(self, stream: str, entry_id: str, x: Exposure) -> Entry:
        window = self.window_for(x.experience) if x.experience else 0.0
        return Entry(stream, entry_id, x.visitor_id, exposure_record(x, window))

    def _event_entry(self, stream: str, entry_id: str, e: Event) -> Entry:
        return Entry(stream, entry_id, e.visitor_id, event_record(e, entry_id))

    async def run_forever(
        self, stop: asyncio.Event, *, block_ms: int = 1000, claim_every_s: float = 60.0
    ) -> None:
        """Process until ``stop`` is set. Redis errors are logged and retried with a 1 s pause; stale
        entries of crashed consumers are claimed every ``claim_every_s``, and once at the start: what a
        stopped consumer handed back (:meth:`hand_back`) is counted now, not a period later."""
        next_claim = time.monotonic()
        while not stop.is_set():
            try:
                await self.run_once(block_ms=block_ms)
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + claim_every_s
                    await self.claim_stale()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis down, a timeout …: keep the consumer alive
                log.exception("aggregation round failed; retrying in 1 s")
                self._ready = False
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass


def _field(fields: dict) -> bytes | str:
    data = fields.get(b"data")
    if data is None:
        data = fields["data"]
    return data
