"""Writing test records to the streams and draining them with aggregation consumers.

One copy for every aggregation test (single stream, partitioned scenario, journey metrics): each
wrote the same XADD pipeline and the same drain loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from redis.asyncio import Redis

from personalization.measurement.aggregation import Aggregator
from personalization.measurement.events import EVENT_ENCODER, Event
from personalization.store.keys import EVENTS, EXPOSURES
from personalization.store.partitions import stream_for
from personalization.types import EXPOSURE_ENCODER, Exposure

__all__ = ["drain", "push", "with_redis"]


async def push(
    redis: Redis,
    exposures: Iterable[Exposure] = (),
    events: Iterable[Event] = (),
    partitions: int = 1,
) -> None:
    """XADD each record (field ``data``) to its visitor's partition, exactly as the exposure writer
    and the event recorder do; one partition is the plain ``vary:exposures`` / ``vary:events``."""
    pipe = redis.pipeline(transaction=False)
    for x in exposures:
        pipe.xadd(stream_for(EXPOSURES, x.visitor_id, partitions), {"data": EXPOSURE_ENCODER.encode(x)})
    for e in events:
        pipe.xadd(stream_for(EVENTS, e.visitor_id, partitions), {"data": EVENT_ENCODER.encode(e)})
    await pipe.execute()


async def drain(*aggregators: Aggregator) -> int:
    """Run the consumers (concurrently) until nothing is left to read or held; records processed."""
    total = 0
    while True:
        counts = await asyncio.gather(*(a.run_once() for a in aggregators))
        total += sum(counts)
        if not any(counts) and not any(a.held for a in aggregators):
            return total


def with_redis(redis_url: str, body: Callable[[Redis], Awaitable[None]]) -> None:
    """Run ``body(client)`` on a fresh asyncio client of ``redis_url``, closed whatever happens (a
    failed assertion must not leave a connection for a later test's garbage collector to report)."""

    async def run() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await body(redis)
        finally:
            await redis.aclose()

    asyncio.run(run())
