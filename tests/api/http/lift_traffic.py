"""Traffic with a planted personalization lift, written to the app's streams as the exposure writer would.

Shared by the results-route and dashboard tests: a seeded split of visitors into the demo
``hero-sale`` personalization's holdout and its personalized arm (variant 1), converters drawn at a
higher rate outside the holdout; the app's in-process aggregator counts them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from litestar.testing import TestClient
from redis.asyncio import Redis

from personalization.measurement.events import Conversion, Event
from personalization.types import Exposure
from tests.personalization.measurement.stream_writes import push
from tests.personalization.measurement.test_aggregation import T0, exposure

__all__ = ["EXPERIENCE", "plant_lift"]

#: The demo's personalization experience (``type: personalization``, holdout 10 %, goal ``purchase``).
EXPERIENCE = "hero-sale"


def plant_lift(
    client: TestClient, redis_url: str, admin: dict[str, str], *, visitors: int = 1200, seed: int = 7,
    holdout_rate: float = 0.15, treated_rate: float = 0.30, holdout_share: float = 0.3,
) -> dict[str, Any]:
    """Write the traffic, wait until the results count it all; returns the results JSON."""
    rng = np.random.default_rng(seed)
    in_holdout = rng.random(visitors) < holdout_share
    converts = rng.random(visitors) < np.where(in_holdout, holdout_rate, treated_rate)
    exposures: list[Exposure] = []
    events: list[Event] = []
    for i in range(visitors):
        held = bool(in_holdout[i])
        exposures.append(
            exposure(f"lift-{i}", 0 if held else 1, T0 + i, experience=EXPERIENCE, holdout=held, entry="heroHome")
        )
        if converts[i]:
            events.append(Conversion(visitor_id=f"lift-{i}", goal="purchase", ts=T0 + i + 60))

    async def write() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await push(redis, exposures, events)
        finally:
            await redis.aclose()

    asyncio.run(write())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = client.get(f"/v1/experiences/{EXPERIENCE}/results", headers=admin).json()
        lift = body.get("personalization_lift", {}).get("purchase")
        counted = sum(body["visitors"]) + body["holdout_visitors"]
        if counted == visitors and lift and lift["treated"]["conversions"] + lift["holdout"]["conversions"] == int(
            converts.sum()
        ):
            return body
        time.sleep(0.2)
    raise AssertionError(f"the aggregator did not count the planted traffic: {body}")
