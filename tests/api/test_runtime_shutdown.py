"""A graceful stop of a worker hands its aggregator's unacknowledged entries back (``Runtime.close``)."""

from __future__ import annotations

import asyncio
import contextlib

from litestar.testing import TestClient
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from api.app import create_app
from api.settings import Settings
from personalization.measurement.aggregation import DEFAULT_GROUP as GROUP
from personalization.store.keys import EVENTS
from personalization.store.partitions import all_streams


def test_a_graceful_stop_hands_the_aggregators_unacknowledged_entries_back(settings: Settings, redis_url: str) -> None:
    stream = all_streams(EVENTS, settings.stream_partitions)[0]
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime
        consumer = runtime.aggregator.consumer  # host, pid and object id: no successor takes this name

        async def strand() -> bytes:
            """An event the worker's consumer has read and not yet acknowledged, as at any instant
            under traffic. Added and read in one transaction: the live consumer, blocked reading the
            stream, cannot take it first; then moved to the worker's consumer."""
            redis = Redis.from_url(redis_url)
            with contextlib.suppress(ResponseError):  # BUSYGROUP: the worker's consumer made it already
                await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            pipe = redis.pipeline(transaction=True)
            pipe.xadd(stream, {"data": b'{"type":"page_view","visitor_id":"v-stranded","page":"/"}'})
            pipe.xreadgroup(GROUP, "test-reader", {stream: ">"}, count=1)
            entry_id, read = await pipe.execute()
            assert read[0][1][0][0] == entry_id
            await redis.xclaim(stream, GROUP, consumer, 0, [entry_id], justid=True)
            await redis.aclose()
            return entry_id

        entry_id = asyncio.run(strand())

    async def pending() -> list[dict]:
        redis = Redis.from_url(redis_url)
        rows = await redis.xpending_range(stream, GROUP, min="-", max="+", count=10, consumername=consumer)
        await redis.aclose()
        return rows

    (row,) = asyncio.run(pending())
    assert row["message_id"] == entry_id  # still pending: nothing was acknowledged or dropped
    # … and idle long enough that the next consumer's first claim (at its start) takes it.
    assert row["time_since_delivered"] >= settings.aggregate_claim_idle_ms
