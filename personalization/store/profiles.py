"""Visitor profiles in Redis: one hash per visitor, read in one round trip per decision.

Layout (one key per visitor, hash-tagged so a Redis Cluster keeps all of a visitor's keys on one
node): ``vary:vh:{<visitor tag>}:p`` (:func:`~personalization.store.keys.profile_key`) → a hash with

=================  ============================================================
``visits``         sessions seen (a new ``session_id``, or 30 min of silence)
``page_views``     ``page_view`` events
``conversions``    ``conversion`` events (all goals)
``first_seen``     Unix seconds of the first event
``last_seen``      Unix seconds of the latest event
``session``        the latest session id (to count visits)
``ch:<channel>``   1 for every channel the visitor used
``g:<goal>``       conversions per goal
``a:<experience>`` sticky variant assignment (written by the exposure writer)
``f:<experience>`` exposures counted for frequency caps, ``"<day> <n> <week> <n> <n all>"``
                  (written by the exposure writer, :mod:`personalization.decision.frequency`)
=================  ============================================================

The visitor's remembered traits, ``vary:vh:{<visitor tag>}:tr`` (:mod:`personalization.store.traits`),
are read in the same round trip too (a third hash) and reach the decision as
:attr:`~personalization.types.Profile.traits`; :meth:`RedisProfileStore.remember_traits` stores the
traits a personalize request sent, without the request waiting for it.

Events update it through :class:`personalization.measurement.recorder.EventRecorder` (one Lua script per
event, so counters stay consistent under concurrent writers without a read-modify-write race).

The visitor's bounded page and event history, ``vary:vh:{<visitor tag>}:h``
(:mod:`personalization.store.visitor_history`), is read with the profile in the same round trip (one
``EVALSHA`` of :data:`~personalization.store.profile_scripts.READ_LUA` per loop turn on a single
server, a pipeline of ``HGETALL`` on a cluster), so a decision still costs one round trip, and it
reaches the decision raw, as :attr:`~personalization.types.Profile.history`, to be parsed only if an
audience reads it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from personalization.store.identity import linked_profile, person_field
from personalization.store.keys import history_key, profile_key, traits_key
from personalization.store.profile_scripts import (
    READ_LUA,
    REMEMBER_MANY_LUA,
    BatchScript,
    hashes,
    together,
)
from personalization.store.traits import (
    MAX_TRAIT_BYTES,
    MAX_TRAITS,
    REMEMBER_LUA,
    encode_traits,
    parse_traits,
)
from personalization.types import Profile, TraitValue

__all__ = [
    "RedisProfileStore",
    "parse_profile",
    "SESSION_TIMEOUT_S",
]

log = logging.getLogger("vary.profiles")

#: Trait merges waiting to be sent: (visitor id, the traits that change).
_Merges = Sequence[tuple[str, dict[str, TraitValue]]]

SESSION_TIMEOUT_S = 1800.0
PROFILE_TTL_S = 400 * 86_400


def _num(raw: bytes | str | None, default: float = 0.0) -> float:
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        return default


_Raw = Mapping[bytes | str, bytes | str]
_Reply = tuple[_Raw, _Raw, _Raw]


def _expire(batch: list[tuple[str, asyncio.Future[_Reply] | None]]) -> None:
    """Fail the reads of ``batch`` still waiting at their deadline (:meth:`RedisProfileStore.load_within`);
    a batch that answered in time left nothing to fail, so its timer needs no cancelling."""
    for _, future in batch:
        if future is not None and not future.done():
            future.set_exception(TimeoutError("profile read past its deadline"))


def _merge_call(merges: _Merges, ttl_s: int) -> tuple[list[str], list[object]]:
    """The keys and arguments of :data:`REMEMBER_MANY_LUA` for ``merges`` (its header gives the layout)."""
    encoded = [encode_traits(traits) for _, traits in merges]
    args: list[object] = [ttl_s, MAX_TRAITS, MAX_TRAIT_BYTES, *(len(flat) for flat in encoded)]
    for flat in encoded:
        args += flat
    return [traits_key(visitor_id) for visitor_id, _ in merges], args


def _log_merges(results: object) -> None:
    """Log what a batch of merges refused: the call as a whole, or some visitors' merges."""
    if isinstance(results, Exception):
        log.warning("remembering traits failed (%s)", type(results).__name__)
        return
    failed = [result for result in results if isinstance(result, Exception)]  # type: ignore[attr-defined]
    if failed:
        log.warning("remembering traits failed for %d visitors (%s)", len(failed), type(failed[0]).__name__)


def _str(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def parse_profile(raw: _Raw, history: _Raw | None = None, traits: _Raw | None = None) -> Profile:
    """A profile from the hash's fields (and the history hash's, kept raw, and the traits hash's);
    unknown fields are ignored, bad numbers read as 0."""
    if not raw and not history and not traits:
        return Profile()
    kept = {_str(k): _str(v) for k, v in history.items()} if history else {}
    remembered = parse_traits(traits)
    if not raw:
        return Profile(history=kept, traits=remembered)
    scalars: dict[str, bytes | str] = {}
    channels: list[str] = []
    goals: dict[str, int] = {}
    assignments: dict[str, int] = {}
    frequency: dict[str, str] = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else key
        if name.startswith("ch:"):
            channels.append(name[3:])
        elif name.startswith("g:"):
            goals[name[2:]] = int(_num(value))
        elif name.startswith("f:"):
            frequency[name[2:]] = _str(value)
        elif name.startswith("a:"):
            try:
                assignments[name[2:]] = int(value)
            except ValueError:
                continue
        else:
            scalars[name] = value
    first = scalars.get("first_seen")
    last = scalars.get("last_seen")
    return Profile(
        visits=int(_num(scalars.get("visits"))),
        page_views=int(_num(scalars.get("page_views"))),
        conversions=int(_num(scalars.get("conversions"))),
        first_seen=_num(first) if first is not None else None,
        last_seen=_num(last) if last is not None else None,
        channels=tuple(sorted(channels)),
        goals=goals,
        assignments=assignments,
        history=kept,
        traits=remembered,
        frequency=frequency,
    )


class RedisStalled(ConnectionError):
    """Redis has not answered a read for longer than the stall threshold; not sent at all."""


class RedisProfileStore:
    """Profiles in Redis (see the module docstring for the layout).

    Reads are **coalesced**: the profile reads of every request that asks in the same event-loop
    turn go to Redis as one call (the three hashes of each, profile, history and traits; one round
    trip for all), and each request gets its own reply. A busy worker has dozens of requests in
    flight; paying the client's per-command cost (connection checkout, a write, a read wake-up) once
    per turn instead of once per request is the largest saving left on the decision path. A request
    that stops waiting (its deadline passed) just drops its reply: the call completes, so the
    connection stays healthy instead of being torn down mid-reply.

    On a single server that call is one ``EVALSHA`` of a read script
    (:mod:`personalization.store.profile_scripts`), whose one nested reply the C parser reads at
    once. As a pipeline of three ``HGETALL`` per visitor, redis-py parsed every reply in Python
    under its own timeout, ~20 % of a request's CPU (issue 22, py-spy). With the turn's trait merges
    also one script call (:meth:`remember_traits`), the in-process harness went from 0.207 to
    0.181 ms CPU per personalize request (medians of 3; the reads are about two thirds of that). A
    cluster cannot run a script over several slots, so there the batch stays a pipeline.

    A **stalled** or unreachable Redis trips a **breaker**: once a read has been outstanding longer
    than ``stall_s`` (paused, or far too slow) or a read failed with a timeout or connection error,
    new reads fail at once (the decision is made without the profile, ``degraded``) instead of
    waiting the caller's whole profile timeout or opening yet another connection that would hang
    until the socket timeout. The breaker stays open until a read succeeds: the read still on the
    wire is the probe, and when none is, the next caller's read goes out as a fresh probe (its
    caller does not wait for it). Without the breaker a paused server made every loop turn check out
    a new connection, and that churn alone halved a worker's throughput and stretched its tail to
    seconds; without its staying open, every socket timeout (2 s) reopened a half-second window in
    which each request waited its full profile timeout.
    """

    #: Most reads (or trait merges) in one call; the rest go in the next one.
    MAX_BATCH = 256
    #: A read outstanding this long means Redis is stalled (a healthy one answers in a millisecond).
    STALL_S = 0.5

    def __init__(
        self, redis: Redis, ttl_s: int = PROFILE_TTL_S, coalesce: bool = True, stall_s: float = STALL_S
    ) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._coalesce = coalesce
        self._stall_s = stall_s
        #: (visitor id, its future) per read waiting for the next batch.
        self._waiting: list[tuple[str, asyncio.Future[_Reply] | None]] = []
        #: The earliest deadline (loop time) of the reads in :attr:`_waiting`; ``None``: none has one.
        self._waiting_deadline: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Start times of the reads on the wire (monotonic), oldest first.
        self._inflight: dict[int, float] = {}
        #: Reads refused at once because the breaker is open.
        self.stalled_reads = 0
        #: Probe reads sent while the breaker was open and nothing else was on the wire.
        self.probes = 0
        self._open = False
        self._remember_script: AsyncScript | None = None  # registered on first use
        self._read_script = BatchScript(READ_LUA)
        self._remember_many_script = BatchScript(REMEMBER_MANY_LUA)
        #: Trait merges waiting for the next batch script call (one per loop turn, like reads); a
        #: cluster cannot run one script over several slots, so there each merge is its own call.
        self._remembering: list[tuple[str, dict[str, TraitValue]]] = []
        self._cluster = isinstance(redis, RedisCluster)

    @property
    def breaker_open(self) -> bool:
        """Whether reads are being refused at once (Redis stalled or unreachable)."""
        return self._breaker_open()

    def _breaker_open(self) -> bool:
        if not self._open and self._inflight:
            self._open = time.monotonic() - next(iter(self._inflight.values())) > self._stall_s
        return self._open

    async def load_within(self, visitor_id: str, timeout_s: float) -> Profile:
        """:meth:`load`, failing with :class:`TimeoutError` once ``timeout_s`` has passed.

        Why not ``asyncio.timeout`` around :meth:`load`, as the service does for other stores: that
        makes a timer, a task lookup and a cancellation per request (about 3 µs, 2 % of a personalize
        request, issue 22). Here the reads of one loop turn share one timer, set at their earliest
        deadline: they were queued within the same turn, so their deadlines differ by microseconds
        (a linked id's second read, queued a round trip later, may make a batch it shares time out up
        to that round trip early). A read past its deadline is failed; its batch completes, so the
        connection stays healthy."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        if not self._coalesce:
            async with asyncio.timeout_at(deadline):
                return await self._load(visitor_id, None)
        return await self._load(visitor_id, deadline)

    async def load(self, visitor_id: str) -> Profile:
        """The whole profile, sticky assignments and history included (three hashes, a round trip
        shared with the other reads of this loop turn). A linked id's
        profile names its person (:mod:`personalization.store.identity`): then a second round trip
        reads the person's, and the answer is the person's merged profile (a
        :class:`~personalization.store.identity.LinkedProfile`, the id's own history under it)."""
        return await self._load(visitor_id, None)

    async def _load(self, visitor_id: str, deadline: float | None) -> Profile:
        own = await self._read(visitor_id, deadline)
        person = person_field(own[0])
        if person is None or person == visitor_id:
            return parse_profile(*own)
        profile, history, traits = await self._read(person, deadline)
        return linked_profile(parse_profile(profile, {**own[1], **history}, traits), person)

    async def _read(self, visitor_id: str, deadline: float | None = None) -> _Reply:
        """The raw profile, history and traits hashes of one id (one round trip, coalesced);
        ``deadline`` (loop time): fail with :class:`TimeoutError` past it (see :meth:`load_within`)."""
        if not self._coalesce:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hgetall(profile_key(visitor_id))
            pipe.hgetall(history_key(visitor_id))
            pipe.hgetall(traits_key(visitor_id))
            profile, history, traits = await pipe.execute()
            return profile, history, traits
        if self._breaker_open():
            self.stalled_reads += 1
            if not self._inflight:  # nothing on the wire to tell us when Redis is back: send a probe
                self.probes += 1
                self._spawn([(visitor_id, None)])
            raise RedisStalled(f"profile reads paused: Redis stalled or unreachable (breaker open, {self._stall_s:.2f} s)")
        future: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._send)
        self._waiting.append((visitor_id, future))
        if deadline is not None and (self._waiting_deadline is None or deadline < self._waiting_deadline):
            self._waiting_deadline = deadline
        return await future

    def _send(self) -> None:
        """The loop turn's reads, :attr:`MAX_BATCH` a call; the turn's trait merges ride with the first
        call (:meth:`_flush_remembered` left them for it), the rest of them go on their own."""
        waiting, self._waiting = self._waiting, []
        deadline, self._waiting_deadline = self._waiting_deadline, None
        for start in range(0, len(waiting), self.MAX_BATCH):
            batch = waiting[start : start + self.MAX_BATCH]
            if deadline is not None:
                asyncio.get_running_loop().call_at(deadline, _expire, batch)
            merges: _Merges = ()
            if start == 0 and not self._cluster:  # (a cluster store never queues merges)
                merges = self._remembering[: self.MAX_BATCH]
                del self._remembering[: self.MAX_BATCH]
            self._spawn(batch, merges)
        self._flush_remembered()  # merges over MAX_BATCH, on their own

    def _spawn(self, batch: list[tuple[str, asyncio.Future[_Reply] | None]], merges: _Merges = ()) -> None:
        """Send ``batch`` (and ``merges``) in a task, counted as on the wire from now (so a second
        probe is not sent in the same loop turn)."""
        token = id(batch)
        self._inflight[token] = time.monotonic()
        task = asyncio.get_running_loop().create_task(self._fetch(batch, token, merges))
        self._tasks.add(task)  # hold a reference until it finishes
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, batch: list[tuple[str, asyncio.Future[_Reply] | None]], token: int, merges: _Merges) -> None:
        try:
            await self._fetch_batch(batch, merges)
        finally:
            self._inflight.pop(token, None)

    async def _fetch_batch(self, batch: list[tuple[str, asyncio.Future[_Reply] | None]], merges: _Merges = ()) -> None:
        """One round trip for ``batch`` (profile, history and traits of each visitor) and ``merges`` (a
        single server's trait merges, applied before the reads); a ``None`` future is a probe nobody
        waits for."""
        try:
            flat = await (self._pipeline_read(batch) if self._cluster else self._script_read(batch, merges))
            replies = [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]
        except BaseException as exc:  # Redis down or slow: every waiter decides without its profile
            if isinstance(exc, OSError | RedisConnectionError | RedisTimeoutError):
                self._open = True
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        self._open = False  # Redis answered: close the breaker
        for (_, future), reply in zip(batch, replies):
            if future is not None and not future.done():  # a waiter past its deadline cancelled it
                future.set_result(reply)

    async def _script_read(
        self, batch: list[tuple[str, asyncio.Future[_Reply] | None]], merges: _Merges = ()
    ) -> list[_Raw]:
        """The three hashes of each visitor in ``batch`` from one ``EVALSHA`` (issue 22: one reply for
        Python to wait on instead of three per visitor), after ``merges`` in the same round trip."""
        keys = [
            key
            for visitor_id, _ in batch
            for key in (profile_key(visitor_id), history_key(visitor_id), traits_key(visitor_id))
        ]
        if not merges:
            return hashes(await self._read_script(self._redis, keys))
        try:
            merge_keys, merge_args = _merge_call(merges, self._ttl_s)
            merged, read = await together(
                self._redis, [(self._remember_many_script, merge_keys, merge_args), (self._read_script, keys, ())]
            )
        except Exception as exc:  # the round trip failed: the reads fail (caller), the merges are logged
            log.warning("remembering traits failed (%s)", type(exc).__name__)
            raise
        _log_merges(merged)
        if isinstance(read, Exception):
            raise read
        return hashes(read)

    async def _pipeline_read(self, batch: list[tuple[str, asyncio.Future[_Reply] | None]]) -> list[_Raw]:
        """The three hashes of each visitor in ``batch`` as a pipeline of ``HGETALL`` (a cluster:
        redis-py splits it by node, which a script over several slots could not be)."""
        pipe = self._redis.pipeline(transaction=False)
        for visitor_id, _ in batch:
            pipe.hgetall(profile_key(visitor_id))
            pipe.hgetall(history_key(visitor_id))
            pipe.hgetall(traits_key(visitor_id))
        return list(await pipe.execute())

    def remember_traits(self, visitor_id: str, traits: dict[str, TraitValue]) -> None:
        """Merge traits a personalize request sent into the visitor's stored ones, in the background
        (the decision does not wait; a failed write is logged and dropped: the front end sends them
        again). The caller has checked the bounds against the traits it read."""
        if not traits:
            return
        if self._cluster:
            self._track(self._remember(visitor_id, traits))
            return
        if not self._remembering:
            asyncio.get_running_loop().call_soon(self._flush_remembered)
        self._remembering.append((visitor_id, traits))

    def _track(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # hold a reference until it finishes
        task.add_done_callback(self._tasks.discard)

    def _flush_remembered(self) -> None:
        """Every merge queued in this loop turn, as one script call: a task, a round trip and a reply
        per turn, not per request (issue 22: a task and an ``EVALSHA`` round trip per personalize
        request were a tenth of a worker's CPU; then a pipeline's reply per merge, parsed in Python,
        still cost more than the one nested reply of :data:`REMEMBER_MANY_LUA`)."""
        if self._waiting and self._coalesce:  # this turn's reads are about to go: the merges ride along
            return
        pending, self._remembering = self._remembering, []
        if pending:
            self._track(self._remember_many(pending))

    async def _remember_many(self, pending: list[tuple[str, dict[str, TraitValue]]]) -> None:
        """``pending`` merged by :data:`REMEMBER_MANY_LUA`, :attr:`MAX_BATCH` visitors a call: each key
        gets the merge :data:`REMEMBER_LUA` would apply (same bounds, same result), and a visitor whose
        merge fails is logged without stopping the others'."""
        for start in range(0, len(pending), self.MAX_BATCH):
            chunk = pending[start : start + self.MAX_BATCH]
            try:
                results = await self._remember_many_script(self._redis, *_merge_call(chunk, self._ttl_s))
            except Exception as exc:  # best effort: the decisions were made with the requests' traits
                log.warning("remembering traits failed (%s)", type(exc).__name__)
                continue
            _log_merges(results)

    async def _remember(self, visitor_id: str, traits: dict[str, TraitValue]) -> None:
        if self._remember_script is None:
            self._remember_script = self._redis.register_script(REMEMBER_LUA)
        try:
            await self._remember_script(
                keys=[traits_key(visitor_id)], args=[self._ttl_s, MAX_TRAITS, MAX_TRAIT_BYTES, *encode_traits(traits)]
            )
        except Exception as exc:  # best effort: the decision was made with the request's traits
            log.warning("remembering traits failed (%s)", type(exc).__name__)

    async def erase(self, visitor_id: str) -> int:
        """Delete the visitor's profile, history and traits; returns the number of keys removed."""
        return int(await self._redis.delete(profile_key(visitor_id), history_key(visitor_id), traits_key(visitor_id)))
