"""Logged traffic written to Redis the way the API writes it, for tests that read the logs back.

Tests of offline evaluation and of training from the logs make up exposures and the events they led
to, then need both in Redis: exposures through the :class:`ExposureWriter` (the exposure streams)
and events through the :class:`EventRecorder`. :func:`store_logs` does that once for all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio import Redis

from personalization.measurement.events import Event
from personalization.measurement.recorder import EventRecorder
from personalization.store.exposures import ExposureWriter
from personalization.types import Exposure

__all__ = ["store_logs"]


def store_logs(redis_url: str, exposures: Sequence[Exposure], events: Sequence[Event]) -> None:
    """Write ``exposures`` and ``events`` to the Redis at ``redis_url`` (blocking)."""

    async def write() -> None:
        redis = Redis.from_url(redis_url)
        writer = ExposureWriter(redis)
        writer.submit(list(exposures))
        await writer.flush()
        await EventRecorder(redis).record(list(events))
        await redis.aclose()

    asyncio.run(write())
