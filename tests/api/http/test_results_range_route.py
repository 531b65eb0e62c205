"""``GET /v1/experiences/{key}/results?since=…&until=…``: an additive ``range`` block summed from the days."""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta

from litestar.testing import TestClient
from redis.asyncio import Redis

from personalization.measurement.attribution import utc_day
from personalization.measurement.events import Conversion
from tests.personalization.measurement.stream_writes import push
from tests.personalization.measurement.test_aggregation import T0, exposure

EXPERIENCE = "hero-sale"
DAYS = 4


def _write(redis_url: str) -> int:
    exposures, events = [], []
    for i in range(24):  # six visitors a day over four UTC days; every other one converts a day later
        ts = T0 + (i % DAYS) * 86_400 + i
        exposures.append(exposure(f"range-{i}", 1, ts, experience=EXPERIENCE, entry="heroHome"))
        if i % 2 == 0:
            events.append(Conversion(visitor_id=f"range-{i}", goal="purchase", ts=ts + 86_400))

    async def write() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await push(redis, exposures, events)
        finally:
            await redis.aclose()

    asyncio.run(write())
    return len(exposures)


def test_results_range_sums_the_days_and_leaves_the_rest_alone(
    client: TestClient, redis_url: str, admin: dict[str, str]
) -> None:
    visitors = _write(redis_url)
    url = f"/v1/experiences/{EXPERIENCE}/results"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = client.get(url, headers=admin).json()
        converted = body.get("goals", {}).get("purchase", {}).get("variants", [{}, {}])[1].get("conversions")
        if sum(body["visitors"]) == visitors and converted == visitors // 2:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the aggregator did not count the traffic: {body}")
    assert "range" not in body  # without since/until the response is as before

    first = date.fromisoformat(utc_day(T0))
    since, until = first + timedelta(days=1), first + timedelta(days=2)
    ranged = client.get(url, params={"since": since.isoformat(), "until": until.isoformat()}, headers=admin)
    assert ranged.status_code == 200, ranged.text
    ranged_body = ranged.json()
    block = ranged_body["range"]
    inside = [d for d in sorted(body["daily"]) if since.isoformat() <= d <= until.isoformat()]
    assert block["days"] == inside and (block["since"], block["until"]) == (since.isoformat(), until.isoformat())
    assert block["visitors"] == [sum(body["daily"][d]["visitors"][v] for d in inside) for v in range(2)]
    assert block["converters"]["purchase"][1] == sum(body["daily"][d]["converters"]["purchase"][1] for d in inside)
    assert 0 < block["visitors"][1] < visitors
    assert {k: v for k, v in ranged_body.items() if k != "range"} == body  # everything else stays all-time

    whole = client.get(url, params={"since": "2000-01-01"}, headers=admin).json()["range"]
    assert whole["visitors"] == body["visitors"]
    assert whole["converters"]["purchase"][1] == body["goals"]["purchase"]["variants"][1]["conversions"]

    for params in ({"since": "soon"}, {"since": until.isoformat(), "until": since.isoformat()}):
        bad = client.get(url, params=params, headers=admin)
        assert bad.status_code == 400, bad.text
