"""Recording events: profile counters, the events stream, idempotency by ``event_id``, a spool.

**Two scripts per event, each in one cluster slot.** The profile hash ``vary:vh:{<visitor tag>}:p`` and
the stream ``vary:events`` (or its partition ``vary:events:{p}``, :func:`~personalization.store.partitions.
stream_for`) hash to different slots, so one script may not touch both. Each event is therefore
written by two small Lua scripts, each atomic and each idempotent on its own:

1. *profile* (visitor slot): ``SET vary:vh:{<visitor tag>}:e:<event id> NX`` — if it was already set,
   stop — then the profile counters and the bounded page/event history
   (:mod:`personalization.store.visitor_history`, ``vary:vh:{<visitor tag>}:h``);
2. *stream* (the stream's slot): ``SET {<stream tag>}:e:<digest> NX`` — if already set, stop — then
   ``XADD``. The digest is a BLAKE2b of visitor id and event id, so no visitor id is stored in clear
   outside the visitor's own keys (erasure finds those by their hash tag).

Because both halves check their own marker, neither order can count an event twice: whichever half
ran before a crash, a lost reply or a Redis restart is skipped when the event is sent again, and the
missing half is done then. The profile half goes first, so at worst a crash leaves an event counted
in the profile whose stream entry the replay (or the client's retry) adds — never a stream entry
measured twice. A whole batch is sent in one pipelined round trip (on a Redis Cluster, whose redis-py
pipeline refuses scripts, one call per event and half, in order per visitor and per stream).

**Survey state rides along.** The profile half also notes a ``survey_shown`` event, or a ``task`` /
``purchase`` some survey waits for (``watched``), in the person's survey state
(:mod:`personalization.store.surveys`, ``vary:vh:{<visitor tag>}:sv``, same slot) behind the same
marker: the cap moves exactly once per event, whether written live or replayed from the spool.

**Traits persist.** An ``identify`` event's traits are merged into the visitor's stored traits by the
profile half (:mod:`personalization.store.traits`: latest wins, bounded). :meth:`EventRecorder.accept`
first checks the bound against the stored traits (one pipelined read, only for a batch that
identifies someone) and rejects an event that would pass it, naming the trait.

**Every event has an id.** An event sent without ``event_id`` gets a server-assigned one
(``vary-srv-…``, unique per process) and its ``ts`` (time received) *before* the first attempt, so a
write whose reply was lost and that is then spooled and replayed is recognised by the same markers.
Client ids are remembered :data:`EVENT_ID_TTL_S` (a week, the window for client retries); server
ids :data:`SERVER_EVENT_ID_TTL_S` (a day, like the exposure batch markers: long enough to outlive a
spool replay, short enough to cost little memory).

**The spool.** When Redis cannot be reached (connection refused, reset, timeout — a dead or paused
server), :meth:`EventRecorder.record_or_spool` appends the batch to the local
:class:`~personalization.store.spool.Spool` (same bounds and fsync policy as the exposure spool) and the
events count as ``spooled``. While the spool holds anything, new events go behind it rather than to
Redis, so one worker's events reach Redis in the order they were received; the replay
(:meth:`EventRecorder.replay`, run every second by the runtime) writes the spool through the same
two scripts (survey state included: a person shown a survey during an outage is capped once the
spool is replayed), resumes past what it already wrote while new batches keep arriving, and
truncates the file only when it has caught up. A full spool raises :class:`EventSpoolFull` (the API
answers 503 with ``Retry-After``): nothing is dropped silently. Events with ``analytics: false`` never get here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import redis.exceptions
from msgspec.structs import replace
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from personalization.errors import Problem, RejectedBatch, StorageUnavailable
from personalization.measurement.events import (
    EVENT_ENCODER,
    EVENT_STREAM,
    Conversion,
    Event,
    EventError,
    Identify,
    PageView,
    Survey,
    decode_events,
)
from personalization.measurement.goals import goal_name_problem
from personalization.measurement.stored_events import STORED_EVENT_DECODER
from personalization.store.keys import (
    event_marker_key,
    event_stream_marker,
    history_key,
    profile_key,
    survey_state_key,
    traits_key,
)
from personalization.store.partitions import stream_for
from personalization.store.profiles import PROFILE_TTL_S, SESSION_TIMEOUT_S
from personalization.store.recent_batches import HOLD_S, HeldWrites
from personalization.store.spool import Spool, replay_forever, replay_spool
from personalization.store.surveys import SURVEY_NOTE_LUA, survey_note
from personalization.store.traits import (
    MAX_TRAIT_BYTES,
    MAX_TRAITS,
    TRAITS_LUA,
    TraitsOverBound,
    check_merge,
    encode_traits,
    load_traits,
)
from personalization.store.visitor_history import (
    HISTORY_LUA,
    history_field,
    history_limits,
)

__all__ = [
    "REDIS_UNREACHABLE",
    "SERVER_EVENT_ID_PREFIX",
    "SURVEY_RANGES",
    "EVENTS_RETRY_AFTER_S",
    "BatchTaken",
    "EventProblem",
    "EventRecorder",
    "EventSpoolFull",
    "EventsRecorded",
    "check_event",
]

log = logging.getLogger("vary.events")

EVENT_ID_TTL_S = 7 * 86_400
SERVER_EVENT_ID_TTL_S = 86_400
SERVER_EVENT_ID_PREFIX = "vary-srv-"
REPLAY_INTERVAL_S = 1.0

#: Errors that mean "Redis cannot be reached now" (spool and retry), as opposed to a refused command.
REDIS_UNREACHABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # refused, reset, closed, and BusyLoadingError after a restart
    redis.exceptions.TimeoutError,  # a paused or overloaded server: the socket timeout
    redis.exceptions.OutOfMemoryError,  # a full server (maxmemory, noeviction) refuses writes: spool until room
    TimeoutError,
    OSError,
)

_Call = tuple[list[str], list[str | int | float | bytes]]

_SERVER_ID_BASE = f"{SERVER_EVENT_ID_PREFIX}{os.urandom(8).hex()}-"
_SERVER_IDS = itertools.count(1)

#: Allowed score range per survey metric (inclusive).
SURVEY_RANGES: dict[str, tuple[float, float]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7), "sus": (0, 100)}


class EventSpoolFull(Exception):
    """Redis is unreachable and the events spool is at its bound: nothing of the batch was kept.
    The client should retry later with the same ``event_id``s."""


class EventsRecorded(msgspec.Struct, frozen=True, kw_only=True):
    """What became of a batch: written now, already there (same ``event_id``), or spooled."""

    accepted: int = 0
    duplicates: int = 0
    spooled: int = 0


class BatchTaken(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`EventRecorder.accept` made of a batch: recorded (or spooled), dropped for want of
    analytics consent, and rejected (each bad event with its index, field and what is wrong)."""

    recorded: EventsRecorded
    dropped: int
    rejected: list[EventError]


#: Seconds a client should wait before retrying a batch that could be neither written nor spooled.
EVENTS_RETRY_AFTER_S = 30


class EventProblem(ValueError):
    """An event that decoded but makes no sense (e.g. an NPS of 11); the message says which field."""


def check_event(event: Event) -> None:
    """Rules msgspec's types cannot say; raises :class:`EventProblem` naming the field."""
    if isinstance(event, Conversion) and (problem := goal_name_problem(event.goal)) is not None:
        raise EventProblem(f"goal: {problem}")
    if isinstance(event, Survey):
        if event.metric == "sus":
            if event.answers is None and event.score is None:
                raise EventProblem("answers: a sus survey needs its 10 answers (1-5 each)")
            return
        if event.score is None:
            raise EventProblem(f"score: a {event.metric} survey needs a score")
        low, high = SURVEY_RANGES[event.metric]
        if not low <= event.score <= high:
            raise EventProblem(f"score: {event.metric} is scored {low:g}-{high:g}, got {event.score:g}")


#: The two halves of recording an event (see the module docstring), each in one cluster slot.
_SCRIPTS = Path(__file__).parent / "scripts"
#: It calls the history's, the traits' and the survey state's functions.
_PROFILE = HISTORY_LUA + TRAITS_LUA + SURVEY_NOTE_LUA + (_SCRIPTS / "event_profile.lua").read_text()
_APPEND = (_SCRIPTS / "event_append.lua").read_text()


def new_event_id() -> str:
    """A server-assigned event id: 64 random bits per process + a counter."""
    return f"{_SERVER_ID_BASE}{next(_SERVER_IDS):x}"


def stamp(event: Event, received_at: float) -> Event:
    """The event with its ``ts`` (time received when absent) and an ``event_id`` (server-assigned when
    absent): what is written, spooled and replayed, so every attempt carries the same identity."""
    if event.ts is not None and event.event_id is not None:
        return event
    return replace(
        event,
        ts=received_at if event.ts is None else event.ts,
        event_id=new_event_id() if event.event_id is None else event.event_id,
    )


class EventRecorder:
    """Counts events into profiles and appends them to the events stream, idempotently; with a
    spool, keeps what Redis cannot take and replays it (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        stream: str = EVENT_STREAM,
        ttl_s: int = PROFILE_TTL_S,
        *,
        partitions: int = 1,
        spool: Spool | None = None,
        watched: Callable[[], frozenset[str]] | None = None,
        hold_s: float = HOLD_S,
    ) -> None:
        """``hold_s``: how long written events are kept to be sent again if the server restarts
        without them (0: not kept; :mod:`personalization.store.recent_batches`)."""
        self._redis = redis
        #: The triggers the space's surveys wait for (read per batch: content changes); showings are
        #: noted without it (:func:`~personalization.store.surveys.survey_note`).
        self._watched = watched
        self._stream = stream
        self._partitions = partitions
        self._ttl_s = ttl_s
        self._cluster = isinstance(redis, RedisCluster)
        self._profile_script = redis.register_script(_PROFILE)
        self._append_script = redis.register_script(_APPEND)
        self._spool = spool
        self._replay_lock = asyncio.Lock()
        #: Events spooled since start, events replayed from spools since start, events waiting now.
        self.spooled = 0
        self.replayed = 0
        self.waiting = 0
        #: Written events held until the server has persisted them (recent_batches).
        self._held: HeldWrites[Event] | None = HeldWrites(redis, "events", hold_s) if hold_s > 0 else None

    @property
    def spool_bytes(self) -> int:
        return self._spool.size if self._spool is not None else 0

    async def record(self, events: Sequence[Event], received_at: float | None = None) -> int:
        """Record a batch in one round trip; returns how many were new (duplicates are skipped).
        Raises when Redis fails (nothing is spooled: see :meth:`record_or_spool`)."""
        if not events:
            return 0
        now = time.time() if received_at is None else received_at
        stamped = [stamp(event, now) for event in events]
        new = sum(await self._write(stamped))
        self._hold(stamped)
        return new

    async def record_or_spool(self, events: Sequence[Event], received_at: float | None = None) -> EventsRecorded:
        """Record a batch, or spool it when Redis cannot be reached (or the spool is not yet replayed,
        to keep the order). Raises :class:`EventSpoolFull` when it can be neither written nor kept,
        and Redis's own error for anything but unreachability (a refused command is not retried)."""
        if not events:
            return EventsRecorded()
        now = time.time() if received_at is None else received_at
        stamped = [stamp(event, now) for event in events]
        if self._spool is not None and self._spool.size > 0:
            return self._keep(stamped, reason="earlier events are still spooled")
        try:
            new = sum(await self._write(stamped))
        except REDIS_UNREACHABLE as exc:
            if self._spool is None:
                raise
            return self._keep(stamped, reason=f"{type(exc).__name__}: {exc}")
        self._hold(stamped)
        return EventsRecorded(accepted=new, duplicates=len(stamped) - new)

    def _hold(self, written: list[Event]) -> None:
        if self._held is not None:
            self._held.add("", written)

    @property
    def resent(self) -> int:
        """Events written again because the server restarted without them."""
        return self._held.resent if self._held is not None else 0

    async def resend_if_restarted(self) -> int:
        """The written events the server may not have persisted, sent again if its ``run_id`` changed
        (their markers skip those it kept); returns how many it had lost."""
        if self._held is None:
            return 0

        async def send(_id: str, events: list[Event]) -> int:
            return sum(await self._write(events))

        def keep(_id: str, events: list[Event], exc: Exception) -> None:  # down again: to the spool
            if self._spool is not None:
                self._keep(events, reason=f"sent again after a restart: {type(exc).__name__}")

        return await self._held.resend_if_restarted(send, keep)

    async def accept(self, raw_events: list[object]) -> BatchTaken:
        """A batch as a front end sent it: each event validated on its own (a bad one rejects only
        itself), those without analytics consent dropped, the rest recorded or spooled.

        Raises :class:`~personalization.errors.RejectedBatch` (naming each event and field) when every
        event was bad, and :class:`~personalization.errors.StorageUnavailable` when the good ones could
        be neither written nor spooled (retry with the same ``event_id``s).
        """
        good, rejected = decode_events(raw_events)
        keep: list[tuple[int, Event]] = []
        dropped = 0
        for index, event in good:
            try:
                check_event(event)
            except EventProblem as exc:
                field, _, message = str(exc).partition(": ")
                rejected.append(EventError(index=index, field=field, message=message))
                continue
            if not event.analytics:
                dropped += 1
                continue
            keep.append((index, event))
        kept = await self._within_trait_bounds(keep, rejected)
        rejected.sort(key=lambda r: r.index)
        recorded = EventsRecorded()
        if kept:
            try:  # Redis unreachable: spooled and replayed later (``spooled``); spool full: retry later
                recorded = await self.record_or_spool(kept)
            except EventSpoolFull as exc:
                raise StorageUnavailable(
                    f"events could not be stored: Redis is unreachable and {exc}; retry with the same event_ids",
                    retry_after_s=EVENTS_RETRY_AFTER_S,
                ) from exc
            except Exception as exc:
                raise StorageUnavailable(
                    f"events could not be stored ({type(exc).__name__}); retry with the same event_ids"
                ) from exc
        if not kept and not dropped:
            raise RejectedBatch(
                "every event in the batch was rejected; nothing was recorded",
                problems=[Problem(f"events[{r.index}].{r.field}", r.message) for r in rejected],
            )
        return BatchTaken(recorded=recorded, dropped=dropped, rejected=rejected)

    async def _within_trait_bounds(self, events: list[tuple[int, Event]], rejected: list[EventError]) -> list[Event]:
        """``events`` less the ``identify`` events whose traits would pass the visitor's bound (each
        added to ``rejected``, naming the trait), checked in order over the stored traits (one
        pipelined read, only when the batch identifies someone). Redis unreachable: no check here
        (the events are spooled; the Lua merge keeps the bound when they are written)."""
        identifies = [(i, e) for i, e in events if isinstance(e, Identify) and e.traits]
        if not identifies:
            return [event for _, event in events]
        try:
            stored = await load_traits(self._redis, (e.visitor_id for _, e in identifies))
        except REDIS_UNREACHABLE:
            return [event for _, event in events]
        refused: set[int] = set()
        for index, event in identifies:
            assert isinstance(event, Identify)
            try:
                stored[event.visitor_id] = check_merge(stored[event.visitor_id], event.traits)
            except TraitsOverBound as exc:
                refused.add(index)
                rejected.append(EventError(index=index, field=f"traits.{exc.trait}", message=exc.detail))
        return [event for index, event in events if index not in refused]

    def _keep(self, stamped: list[Event], reason: str) -> EventsRecorded:
        assert self._spool is not None
        if not self._spool.append(new_event_id(), [EVENT_ENCODER.encode(event) for event in stamped]):
            raise EventSpoolFull(f"the events spool is full ({self._spool.max_bytes} bytes)")
        self.spooled += len(stamped)
        self.waiting += len(stamped)
        log.warning("%d events spooled (%s)", len(stamped), reason)
        return EventsRecorded(spooled=len(stamped))

    async def _write(self, stamped: Sequence[Event]) -> list[bool]:
        """Both halves of every event, profile half first; per event, whether it was new (either half
        had not been done before). One pipelined round trip on a single server; on a cluster (whose
        redis-py pipeline refuses scripts) one call per event and half, in order per key."""
        watched = self._watched() if self._watched is not None else frozenset()
        calls = [self._calls(event, watched) for event in stamped]
        if self._cluster:
            profiles = await self._in_order(self._profile_script, [profile for profile, _ in calls])
            appends = await self._in_order(self._append_script, [append for _, append in calls])
            return [bool(p) or bool(a) for p, a in zip(profiles, appends, strict=True)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for (profile_keys, profile_args), (append_keys, append_args) in calls:
                await self._profile_script(keys=profile_keys, args=profile_args, client=pipe)
                await self._append_script(keys=append_keys, args=append_args, client=pipe)
            results = await pipe.execute()
        return [bool(int(results[i])) or bool(int(results[i + 1])) for i in range(0, len(results), 2)]

    def _calls(self, event: Event, watched: frozenset[str]) -> tuple[_Call, _Call]:
        """The keys and arguments of the profile half (visitor slot) and the stream half (stream slot)."""
        assert event.ts is not None and event.event_id is not None
        marker_ttl = SERVER_EVENT_ID_TTL_S if event.event_id.startswith(SERVER_EVENT_ID_PREFIX) else EVENT_ID_TTL_S
        stream = stream_for(self._stream, event.visitor_id, self._partitions)
        field = history_field(event)
        keep, cap = history_limits(field) if field else (0, 0)
        note = survey_note(event, watched) or ("", "")
        profile: _Call = (
            [profile_key(event.visitor_id), event_marker_key(event.visitor_id, event.event_id),
             history_key(event.visitor_id), traits_key(event.visitor_id), survey_state_key(event.visitor_id)],
            [
                repr(event.ts),
                event.session_id or "",
                event.channel or "",
                "1" if isinstance(event, PageView) else "0",
                event.goal if isinstance(event, Conversion) else "",
                SESSION_TIMEOUT_S,
                self._ttl_s,
                marker_ttl,
                field or "",
                keep,
                cap,
                MAX_TRAITS,
                MAX_TRAIT_BYTES,
                *note,
                *(encode_traits(event.traits) if isinstance(event, Identify) else ()),
            ],
        )
        marker = event_stream_marker(stream, event.visitor_id, event.event_id)
        append: _Call = ([stream, marker], [marker_ttl, EVENT_ENCODER.encode(event)])
        return profile, append

    @staticmethod
    async def _in_order(script: AsyncScript, calls: list[_Call]) -> list[int]:
        """Each call on its own, one after another for the same first key (a visitor's profile, a
        stream: their order matters), different keys concurrently."""
        results = [0] * len(calls)
        by_key: dict[str, list[int]] = {}
        for index, (keys, _) in enumerate(calls):
            by_key.setdefault(keys[0], []).append(index)

        async def run(indexes: list[int]) -> None:
            for index in indexes:
                keys, args = calls[index]
                results[index] = int(await script(keys=keys, args=args))

        await asyncio.gather(*(run(indexes) for indexes in by_key.values()))
        return results

    async def replay(self, spool: Spool | None = None) -> int:
        """Write spooled events to Redis in order (already-written ones are skipped by their markers),
        then truncate the spool. Returns the events replayed; on a Redis error it stops and keeps the
        spool whole (the next replay sends it again, harmlessly). ``spool``: another worker's
        leftover file to drain; default: our own."""
        own = spool is None or spool is self._spool
        spool = self._spool if spool is None else spool
        if spool is None or spool.size == 0:
            return 0
        name = spool.path.name

        async def write(_batch_id: str, entries: list[msgspec.Raw]) -> int:
            events = [e for e in (_decode_spooled(raw, name) for raw in entries) if e]
            if events:
                await self._write(events)
                self._hold(events)
            return len(events)

        async with self._replay_lock if own else contextlib.nullcontext():
            replayed = await replay_spool(spool, write)
            self.replayed += replayed
            if own:
                self.waiting = 0
            log.info("replayed %d spooled events from %s", replayed, spool.path.name)
            return replayed

    async def replay_forever(self, stop: asyncio.Event, interval_s: float = REPLAY_INTERVAL_S) -> None:
        """Replay our own spool whenever it holds something and Redis answers (until ``stop``)."""
        await replay_forever(
            self._spool, self.replay, interval_s=interval_s, logger=log, what="events spool", stop=stop,
            before=self.resend_if_restarted if self._held is not None else None,
        )

    def close(self) -> None:
        """Close our spool; what is in it is replayed by the next worker that starts."""
        if self._spool is not None:
            self._spool.close()


def _decode_spooled(raw: msgspec.Raw, path: str) -> Event | None:
    try:
        return STORED_EVENT_DECODER.decode(raw)  # a newer version's fields ignored (stored_events.py)
    except msgspec.DecodeError as exc:  # e.g. written by a newer version: skip it, keep the rest
        log.error("events spool %s: skipping an event that does not decode (%s)", path, exc)
        return None
