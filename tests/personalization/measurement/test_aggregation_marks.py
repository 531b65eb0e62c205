"""Events wait for the exposure writers' marks (personalization/store/writer_marks.py), real Valkey."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from personalization.measurement.events import Conversion
from personalization.store.writer_marks import publish_mark
from tests.personalization.measurement.stream_writes import push, with_redis
from tests.personalization.measurement.test_aggregation import (
    agg,
    exposure,
    make_aggregator,
)


def test_events_wait_until_every_writer_has_written_what_came_before(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    """The outage case: the event is in its stream, its exposure still in a writer's spool. The
    streams read to their end say "release"; the writer's mark says "wait"."""

    async def body(redis: Redis) -> None:
        now = time.time()
        await publish_mark(redis, "worker-1", low=0.0, now=now)  # its spool holds exposures of unknown age
        await publish_mark(redis, "worker-2", low=None, now=now - 5)  # nothing waiting, 5 s ago
        await push(redis, [], [Conversion(visitor_id="a", goal="signup", ts=now)])
        aggregator = make_aggregator(redis)  # no grace: only the marks hold the event
        assert await aggregator.run_once() == 0 and aggregator.held == 1
        # The spool is replayed: the exposure reaches its stream, then the mark moves on.
        await push(redis, [exposure("a", 1, now - 1)])
        assert await aggregator.run_once() == 1 and aggregator.held == 1  # the exposure, counted
        await publish_mark(redis, "worker-1", low=None)
        # worker-2's mark is older than the event: it may have decided the exposure since. Its next
        # tick (once a second) vouches for everything before it.
        assert await aggregator.run_once() == 0 and aggregator.held == 1
        await publish_mark(redis, "worker-2", low=None)
        assert await aggregator.run_once() == 1 and aggregator.held == 0  # now the event

    with_redis(redis_url, body)
    overall = agg(sync_redis, "all")
    assert (overall["1:visitors"], overall["1:conv:signup"]) == (1, 1)


def test_without_marks_nothing_changes(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    """Writers of versions before the marks publish none: events are released as before."""

    async def body(redis: Redis) -> None:
        now = time.time()
        await push(redis, [exposure("b", 0, now - 1)], [Conversion(visitor_id="b", goal="signup", ts=now)])
        aggregator = make_aggregator(redis)
        assert await aggregator.run_once() == 2 and aggregator.held == 0

    with_redis(redis_url, body)
    assert agg(sync_redis, "all")["0:conv:signup"] == 1
