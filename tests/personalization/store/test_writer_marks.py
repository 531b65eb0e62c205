"""Exposure writers' marks against the real Valkey: what they say, when they die, what a writer publishes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
from redis.asyncio import Redis

from personalization.store.exposures import ExposureWriter
from personalization.store.spool import Spool
from personalization.store.writer_marks import (
    WRITER_MARKS,
    WriterMark,
    complete_until,
    forget_mark,
    publish_mark,
)
from tests.personalization.measurement.stream_writes import with_redis
from tests.personalization.measurement.test_aggregation import exposure


def test_the_slowest_writer_decides(redis_url: str) -> None:
    async def body(redis: Redis) -> None:
        now = 1_000.0
        assert await complete_until(redis, reachable_since=now, dead_s=30, now=now) is None  # no writer: no wait
        await publish_mark(redis, "a", low=None, now=now - 1)  # nothing waiting: complete up to its publishing
        await publish_mark(redis, "b", low=now - 5, now=now - 0.5)  # an exposure queued 5 s ago
        assert await complete_until(redis, reachable_since=now, dead_s=30, now=now) == now - 5
        await publish_mark(redis, "b", low=0.0, now=now)  # a spool of unknown age: everything waits
        assert await complete_until(redis, reachable_since=now, dead_s=30, now=now) == 0.0
        await forget_mark(redis, "b")  # stopped, all written
        assert await complete_until(redis, reachable_since=now, dead_s=30, now=now) == now - 1

    with_redis(redis_url, body)


def test_a_dead_writer_is_dropped_but_not_for_an_outage(redis_url: str) -> None:
    async def body(redis: Redis) -> None:
        now = 10_000.0
        await publish_mark(redis, "alive", low=None, now=now - 1)
        await publish_mark(redis, "from-before-the-outage", low=None, now=now - 600)
        # Redis came back 2 s ago: a mark ten minutes old is not dead yet, its writer may just not
        # have renewed it; it holds every event after it.
        assert await complete_until(redis, reachable_since=now - 2, dead_s=30, now=now) == now - 600
        assert await redis.hlen(WRITER_MARKS) == 2
        # 31 s of Redis and still not renewed: gone, dropped.
        assert await complete_until(redis, reachable_since=now - 31, dead_s=30, now=now) == now - 1
        assert await redis.hkeys(WRITER_MARKS) == [b"alive"]
        await redis.hset(WRITER_MARKS, "garbled", b"{not json")  # not a mark this version reads
        assert await complete_until(redis, reachable_since=now, dead_s=30, now=now) == now - 1
        assert await redis.hkeys(WRITER_MARKS) == [b"alive"]

    with_redis(redis_url, body)


def test_a_writer_says_what_it_still_holds(redis_url: str, tmp_path: Path) -> None:
    """``waiting_since``: a queued exposure's batch time, ``0.0`` with a spool, ``None`` when all is
    written; the running writer publishes it once a second and removes its mark when it stops."""

    async def body(redis: Redis) -> None:
        down = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)  # nothing listens there
        try:
            before = time.time()
            spooled = ExposureWriter(down, spool=Spool(tmp_path / "x.spool"), hold_s=0)
            spooled.submit([exposure("v1", 1, time.time())])
            # The batch's opening time: no later than the exposure's own, never after it.
            assert before <= spooled.waiting_since <= time.time()  # type: ignore[operator]
            await spooled.flush()
            assert spooled.spooled == 1 and spooled.waiting_since == 0.0
        finally:
            await down.aclose()

        writer = ExposureWriter(redis)
        assert writer.waiting_since is None
        writer.start()
        try:
            writer.submit([exposure("v2", 1, time.time())])
            await writer.flush()
            assert writer.written == 1 and writer.waiting_since is None
            deadline = time.monotonic() + 5
            while not await redis.hlen(WRITER_MARKS):
                assert time.monotonic() < deadline, "no mark published"
                await asyncio.sleep(0.1)
            (raw,) = (await redis.hgetall(WRITER_MARKS)).values()
            mark = msgspec.json.decode(raw, type=WriterMark)
            assert mark.low is None and abs(mark.hb - time.time()) < 5
        finally:
            await writer.close()
        assert await redis.hlen(WRITER_MARKS) == 0

    with_redis(redis_url, body)
