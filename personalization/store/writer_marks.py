"""How far each exposure writer's exposures are all in the streams: the aggregator's watermark.

An event counts for an experience only if the visitor's exposure was processed first, so the
aggregator holds events until no exposure decided before them can still arrive
(:mod:`personalization.measurement.aggregation`). Reading the exposure streams to their end is not
enough: an exposure is decided before, but written after, the click it caused, and after a Redis
outage the workers' exposure spools replay for seconds — or minutes — while the events' spools,
smaller, are written at once. Measured before these marks existed: 2,000 visitors decided and
converted while Redis was down; once it was back, 212 of ~1,800 conversions were attributed, the
rest released before their exposures were replayed, and counted nowhere.

So every exposure writer publishes, once a second, a *mark* in one hash (:data:`WRITER_MARKS`,
field ``<host>:<pid>``): ``{"hb": <time of publishing>, "low": <oldest exposure not yet written>}``,
``low`` being ``0`` while the writer's spool holds anything (a backlog of unknown age) and absent
when nothing is waiting. Every exposure decided before ``min(hb, low)`` is in a stream
(:func:`complete_until`); the aggregator releases an event only once that time has passed it.

A writer that stops cleanly removes its mark. One that died leaves it, and the aggregator drops a
mark not renewed for ``dead_s`` seconds *of its own Redis access* (a mark left from before an outage
is not dead because the outage was long: every writer renews its mark within a second of Redis
answering again). Until a dead mark is dropped, events after it wait: a crashed worker delays
results by ``dead_s``, never loses them. A writer that has never reached Redis (started during an
outage) has no mark to wait for; writers of versions without marks are not waited for either.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

import msgspec
from redis.asyncio import Redis

__all__ = ["WRITER_MARKS", "WriterMark", "complete_until", "forget_mark", "publish_mark", "writer_id"]

log = logging.getLogger("vary.exposures")

#: Hash of writer id → :class:`WriterMark` as JSON. One key (one slot on a cluster).
WRITER_MARKS = "vary:writers:marks"


class WriterMark(msgspec.Struct, frozen=True, omit_defaults=True):
    """One writer's mark: ``hb`` when it was published, ``low`` the oldest exposure still waiting
    (``None``: none; ``0``: a spool of unknown age)."""

    hb: float
    low: float | None = None

    def complete(self) -> float:
        """Every exposure of this writer decided before this time is in a stream."""
        return self.hb if self.low is None else min(self.hb, self.low)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(WriterMark)


def writer_id() -> str:
    """This process's writer id: ``<host>:<pid>`` (a restarted worker is a new writer)."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def publish_mark(redis: Redis, writer: str, low: float | None, now: float | None = None) -> None:
    """Publish ``writer``'s mark (raises what Redis raises: the caller retries at its next tick)."""
    await redis.hset(WRITER_MARKS, writer, _ENCODER.encode(WriterMark(hb=time.time() if now is None else now, low=low)))


async def forget_mark(redis: Redis, writer: str) -> None:
    """Remove ``writer``'s mark: it has written everything and stops."""
    await redis.hdel(WRITER_MARKS, writer)


async def complete_until(redis: Redis, reachable_since: float, dead_s: float, now: float | None = None) -> float | None:
    """The time before which every writer's exposures are all in the streams, or ``None`` when no
    writer has a mark. Marks not renewed for ``dead_s`` since ``max(hb, reachable_since)`` — the
    time the caller has had Redis since — are dropped (logged): their writer is gone."""
    now = time.time() if now is None else now
    raw: Mapping[bytes | str, bytes | str] = await redis.hgetall(WRITER_MARKS)
    limit: float | None = None
    dead: list[bytes | str] = []
    for writer, value in raw.items():
        try:
            mark = _DECODER.decode(value)
        except msgspec.DecodeError:
            dead.append(writer)  # not a mark this version can read: not waited for
            continue
        if now - max(mark.hb, reachable_since) > dead_s:
            dead.append(writer)
            continue
        complete = mark.complete()
        limit = complete if limit is None else min(limit, complete)
    if dead:
        await redis.hdel(WRITER_MARKS, *dead)
        log.warning("dropped %d exposure writer mark(s) not renewed for %.0f s: %s", len(dead), dead_s,
                    ", ".join(w.decode() if isinstance(w, bytes) else w for w in dead))
    return limit
