"""Visitor profiles in Redis: one hash per visitor, read in one round trip per decision.

Layout (one key per visitor, hash-tagged so a Redis Cluster keeps all of a visitor's keys on one
node): ``vary:v:{<visitor id>}:p`` → a hash with

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
=================  ============================================================

Events update it through :class:`personalization.measurement.EventRecorder` (one Lua script per
event, so counters stay consistent under concurrent writers without a read-modify-write race).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Protocol

from redis.asyncio import Redis

from personalization.types import Profile

__all__ = [
    "ProfileStore",
    "RedisProfileStore",
    "profile_key",
    "parse_profile",
    "SESSION_TIMEOUT_S",
]

SESSION_TIMEOUT_S = 1800.0
PROFILE_TTL_S = 400 * 86_400


def profile_key(visitor_id: str) -> str:
    """The visitor's profile hash key; ``{…}`` is the cluster hash tag."""
    return f"vary:v:{{{visitor_id}}}:p"


class ProfileStore(Protocol):
    """Where profiles live. Vary ships :class:`RedisProfileStore`; tests may use an in-memory one."""

    async def load(self, visitor_id: str) -> Profile: ...


def _num(raw: bytes | str | None, default: float = 0.0) -> float:
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        return default


def parse_profile(raw: Mapping[bytes | str, bytes | str]) -> Profile:
    """A profile from the hash's fields; unknown fields are ignored, bad numbers read as 0."""
    if not raw:
        return Profile()
    scalars: dict[str, bytes | str] = {}
    channels: list[str] = []
    goals: dict[str, int] = {}
    assignments: dict[str, int] = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else key
        if name.startswith("ch:"):
            channels.append(name[3:])
        elif name.startswith("g:"):
            goals[name[2:]] = int(_num(value))
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
    )


class RedisStalled(ConnectionError):
    """Redis has not answered a read for longer than the stall threshold; not sent at all."""


class RedisProfileStore:
    """Profiles in Redis (see the module docstring for the layout).

    Reads are **coalesced**: the profile reads of every request that asks in the same event-loop
    turn go to Redis as one pipeline (one ``HGETALL`` each, one round trip for all), and each
    request gets its own reply. A busy worker has dozens of requests in flight; paying the client's
    per-command cost (connection checkout, a write, a read wake-up) once per turn instead of once
    per request is the largest saving left on the decision path. A request that stops waiting
    (its deadline passed) just drops its reply: the pipeline completes, so the connection stays
    healthy instead of being torn down mid-reply.

    A **stalled** Redis (paused, or too slow to answer within ``stall_s``) trips a breaker: while a
    read has been outstanding longer than ``stall_s``, new reads fail at once (the decision is made
    without the profile, ``degraded``) instead of opening yet another connection that would hang
    until the socket timeout. Without it a paused server makes every loop turn check out a new
    connection, and that churn alone halved a worker's throughput and stretched its tail to
    seconds. The outstanding read is the probe: when it returns (or times out), reads resume.
    """

    #: Most reads in one pipeline; the rest go in the next one.
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
        self._waiting: list[tuple[str, asyncio.Future[Mapping[bytes, bytes]]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        #: Start times of the reads on the wire (monotonic), oldest first.
        self._inflight: dict[int, float] = {}
        self.stalled_reads = 0

    def _stalled(self) -> bool:
        if not self._inflight:
            return False
        return time.monotonic() - next(iter(self._inflight.values())) > self._stall_s

    async def load(self, visitor_id: str) -> Profile:
        """The whole profile, sticky assignments included (one ``HGETALL``, shared round trip)."""
        if not self._coalesce:
            return parse_profile(await self._redis.hgetall(profile_key(visitor_id)))
        if self._stalled():
            self.stalled_reads += 1
            raise RedisStalled(f"a profile read has waited over {self._stall_s:.2f} s: Redis is stalled")
        future: asyncio.Future[Mapping[bytes, bytes]] = asyncio.get_running_loop().create_future()
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._send)
        self._waiting.append((profile_key(visitor_id), future))
        return parse_profile(await future)

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), self.MAX_BATCH):
            task = asyncio.get_running_loop().create_task(self._fetch(waiting[start : start + self.MAX_BATCH]))
            self._tasks.add(task)  # hold a reference until it finishes
            task.add_done_callback(self._tasks.discard)

    async def _fetch(self, batch: list[tuple[str, asyncio.Future[Mapping[bytes, bytes]]]]) -> None:
        token = id(batch)
        self._inflight[token] = time.monotonic()
        try:
            await self._fetch_batch(batch)
        finally:
            self._inflight.pop(token, None)

    async def _fetch_batch(self, batch: list[tuple[str, asyncio.Future[Mapping[bytes, bytes]]]]) -> None:
        try:
            if len(batch) == 1:
                replies = [await self._redis.hgetall(batch[0][0])]
            else:
                pipe = self._redis.pipeline(transaction=False)
                for key, _ in batch:
                    pipe.hgetall(key)
                replies = await pipe.execute()
        except BaseException as exc:  # Redis down or slow: every waiter decides without its profile
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies):
            if not future.done():  # a waiter past its deadline has cancelled its future
                future.set_result(reply)

    async def erase(self, visitor_id: str) -> int:
        """Delete the visitor's profile; returns the number of keys removed."""
        return int(await self._redis.delete(profile_key(visitor_id)))
