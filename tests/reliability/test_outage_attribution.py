"""Visitors decided and converting while Redis is down are all counted once it is back.

Both kinds of record are spooled during the outage (exposures by the exposure writer, events by the
event recorder) and replayed when Redis answers again. The events' spool is small and written at
once; the exposures' takes longer. Before the writers published their marks
(personalization/store/writer_marks.py) the aggregator released the events as soon as the exposure
streams read to their end, before the exposures they followed were replayed: of ~1,800 conversions
of this test 212 were counted, the rest nowhere (not even as ``discarded``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import redis

from api.embedded.valkey import EmbeddedRedis
from tests.e2e.servers import VaryProcess, aggregation_settled, free_port

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

DELIVERY = "vd_outage_attribution_000000000000"
ADMIN = "va_outage_attribution_000000000000"
EXPERIENCE = "banner-shipping-test"
VISITORS = 2_000


async def _outage_traffic(base: str) -> int:
    """Every visitor decided (two entries), then one conversion each, in batches; returns how many
    were served the experience."""
    headers = {"Authorization": f"Bearer {DELIVERY}"}
    served = 0
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:

        async def visitor(i: int) -> int:
            body = {"visitor": {"id": f"v-{i:05d}", "country": "CA"}, "entries": ["bannerShipping", "heroHome"]}
            answer = await client.post("/v1/personalize", json=body)
            assert answer.status_code == 200, answer.text
            return any(e.get("experience") == EXPERIENCE for e in answer.json()["entries"])

        for start in range(0, VISITORS, 8):
            served += sum(await asyncio.gather(*(visitor(i) for i in range(start, min(VISITORS, start + 8)))))
        events = [
            {"type": "conversion", "visitor_id": f"v-{i:05d}", "goal": "purchase", "value": 10, "event_id": f"c-{i}"}
            for i in range(VISITORS)
        ]
        for start in range(0, VISITORS, 250):
            answer = await client.post("/v1/events", json={"events": events[start : start + 250]})
            assert answer.status_code == 202 and answer.json()["spooled"] == len(events[start : start + 250]), answer.text
    return served


def test_conversions_during_an_outage_are_all_attributed(tmp_path: Path) -> None:
    port = free_port()
    valkey = EmbeddedRedis(tmp_path / "valkey", port=port)
    valkey.start()
    vary = VaryProcess(
        {"VARY_REDIS_URL": f"redis://127.0.0.1:{port}", "VARY_DELIVERY_KEYS": DELIVERY, "VARY_ADMIN_KEYS": ADMIN,
         "VARY_CONTENT_POLL_S": "0", "VARY_ACCESS_LOG": "false"},
        tmp_path / "vary",
    )
    try:
        vary.wait_ready()
        time.sleep(1.5)  # every worker has published its mark once
        valkey.kill()
        served = asyncio.run(_outage_traffic(vary.base))
        valkey.start()
        store = redis.Redis(port=port, decode_responses=True)
        seen: list[object] = []
        deadline = time.monotonic() + 180
        with httpx.Client(base_url=vary.base, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as admin:
            while True:
                body = admin.get(f"/v1/experiences/{EXPERIENCE}/results").json()
                arms = {v["variant"]: (v["visitors"], v["conversions"]) for v in body["goals"]["purchase"]["variants"]}
                seen.append(arms)
                if len(seen) >= 5 and seen[-5:] == [arms] * 5 and aggregation_settled(store):
                    break
                assert time.monotonic() < deadline, f"aggregates still moving: {arms}\n{vary.output()}"
                time.sleep(1.0)
        store.close()
        visitors = sum(v for v, _ in arms.values())
        # Every served visitor counted (but the global holdout's, ~5 %), and each one's conversion too.
        assert visitors >= 0.9 * served, (visitors, served, arms)
        assert all(conversions == v for v, conversions in arms.values()), (arms, body.get("discarded"), vary.output())
    finally:
        vary.stop()
        valkey.stop()
