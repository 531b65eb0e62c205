"""The runtime follows pauses and phases for its personalizer (``Runtime.refresh_live_state``)."""

from __future__ import annotations

import asyncio

from litestar.testing import TestClient
from redis.asyncio import Redis

from personalization.store.pauses import pause_variant, resume
from personalization.store.phases import list_phases

EXPERIENCE = "banner-shipping-test"
REASON = "paused: guardrail csat harmed (CSAT 3.1 vs 4.2)"


def _banner(client: TestClient, delivery: dict[str, str], visitor_id: str) -> dict:
    body = {"visitor": {"id": visitor_id}, "entries": ["bannerShipping"]}
    response = client.post("/v1/personalize", json=body, headers=delivery)
    assert response.status_code == 200, response.text
    return response.json()["entries"][0]


def test_a_pause_reaches_decisions_after_a_refresh_and_phases_are_recorded_at_start(
    client: TestClient, delivery: dict[str, str], redis_url: str
) -> None:
    runtime = client.app.state.runtime
    visitor_id, treated = next(
        (f"shopper-{i}", entry)
        for i in range(200)
        if (entry := _banner(client, delivery, f"shopper-{i}"))["experience"] == EXPERIENCE and entry["variant"] >= 1
    )
    variant = treated["variant"]

    async def pause() -> None:
        redis = Redis.from_url(redis_url)
        assert await pause_variant(redis, EXPERIENCE, variant, REASON, "csat", 1, 1.0)
        assert [p.phase for p in await list_phases(redis, EXPERIENCE)] == [1]  # recorded when it started
        await redis.aclose()

    asyncio.run(pause())
    with client.portal() as portal:
        portal.call(runtime.refresh_live_state)  # what the background refresh does every 2 s
    paused = _banner(client, delivery, visitor_id)
    assert paused["variant"] == variant and paused["variant_entry_id"] == "bannerShipping"
    assert paused["reason"].startswith(REASON) and paused["fields"] is not None

    async def lift() -> None:
        redis = Redis.from_url(redis_url)
        assert await resume(redis, EXPERIENCE, 1) == [variant]
        await redis.aclose()

    asyncio.run(lift())
    with client.portal() as portal:
        portal.call(runtime.refresh_live_state)
    assert _banner(client, delivery, visitor_id)["variant_entry_id"] == treated["variant_entry_id"]
