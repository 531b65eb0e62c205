"""Guardrails over HTTP: a planted CSAT harm in the demo's ``banner-shipping-test`` is counted by the
in-process aggregator, paused by the in-process guardrail loop, shown by ``GET /v1/experiences`` and
lifted by ``POST /v1/experiences/{key}/resume`` (admin key; 404 unknown, 409 nothing paused)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import numpy as np
import pytest
from litestar.testing import TestClient
from redis.asyncio import Redis

from api.app import create_app
from api.settings import Settings
from personalization.measurement.events import Event, Survey
from personalization.store.keys import SINK_GUARDRAILS
from personalization.store.pauses import pause_variant
from personalization.types import Exposure
from tests.personalization.measurement.stream_writes import push
from tests.personalization.measurement.test_aggregation import exposure

EXPERIENCE = "banner-shipping-test"  # demo guardrails: csat, task_success; variants 1 and 2


@pytest.fixture
def fast_client(settings: Settings) -> Iterator[TestClient]:
    """The app with the guardrail loop checking every 0.1 s."""
    with TestClient(create_app(msgspec.structs.replace(settings, guardrail_check_s=0.1))) as client:
        yield client


def _listed(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    response = client.get("/v1/experiences", headers=admin)
    assert response.status_code == 200, response.text
    return {e["key"]: e for e in response.json()["experiences"]}


def _plant_csat_harm(redis_url: str, per_arm: int = 260) -> None:
    """Visitors of control and variant 1 are 80 % satisfied, of variant 2 45 %: one csat answer each."""
    rng = np.random.default_rng(18)
    now = time.time() - 600
    exposures: list[Exposure] = []
    events: list[Event] = []
    for i in range(3 * per_arm):
        v = i % 3
        visitor = f"gr-{i}"
        exposures.append(exposure(visitor, v, now + i * 0.1, experience=EXPERIENCE, entry="bannerShipping"))
        satisfied = rng.random() < (0.45 if v == 2 else 0.8)
        events.append(Survey(visitor_id=visitor, metric="csat", score=5 if satisfied else 2, ts=now + 300 + i * 0.1))

    async def write() -> None:
        async with Redis.from_url(redis_url) as redis:
            await push(redis, exposures, [])
            await asyncio.sleep(0.5)  # exposures first, as on a site: the survey comes after the page
            await push(redis, [], events)

    asyncio.run(write())


def test_a_planted_csat_harm_pauses_the_variant_and_resume_lifts_it(
    fast_client: TestClient, redis_url: str, sync_redis, admin: dict[str, str]
) -> None:
    before = _listed(fast_client, admin)
    assert before[EXPERIENCE]["status"] == "running" and before[EXPERIENCE]["paused"] == {}
    _plant_csat_harm(redis_url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = _listed(fast_client, admin)[EXPERIENCE]
        if listed["status"] == "paused_by_guardrail":
            break
        time.sleep(0.2)
    assert listed["status"] == "paused_by_guardrail", listed
    assert list(listed["paused"]) == ["2"] and listed["paused"]["2"].startswith("paused: guardrail csat harmed (csat −")
    # The monitor may check while the answers are still being counted: at least its minimum sample
    # per arm (200), at most all 260, the same in both arms (the simulated arms answer alike).
    counted = re.search(r", (\d+) vs (\d+) answers\)$", listed["paused"]["2"])
    assert counted is not None and 200 <= int(counted[1]) <= 260 and 200 <= int(counted[2]) <= 260
    assert sync_redis.xlen(SINK_GUARDRAILS) == 1

    resumed = fast_client.post(f"/v1/experiences/{EXPERIENCE}/resume", headers=admin)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json() == {"experience": EXPERIENCE, "phase": 1, "resumed": [2]}
    time.sleep(0.5)  # several more checks: a resumed pause is not applied again in its phase
    after = _listed(fast_client, admin)[EXPERIENCE]
    assert after["status"] == "running" and after["paused"] == {}
    again = fast_client.post(f"/v1/experiences/{EXPERIENCE}/resume", headers=admin)
    assert again.status_code == 409 and "nothing to resume" in again.text
    assert sync_redis.xlen(SINK_GUARDRAILS) == 1


def test_resume_needs_the_admin_key_and_a_known_experience(
    client: TestClient, redis_url: str, admin: dict[str, str], delivery: dict[str, str]
) -> None:
    async def pause() -> None:
        async with Redis.from_url(redis_url) as redis:
            assert await pause_variant(redis, EXPERIENCE, 1, "csat −9.0 pts [−15.0, −3.0], 300 vs 300 answers",
                                       "csat", 1, time.time())

    asyncio.run(pause())
    listed = _listed(client, admin)
    assert listed[EXPERIENCE]["status"] == "paused_by_guardrail"
    assert listed[EXPERIENCE]["paused"] == {"1": "csat −9.0 pts [−15.0, −3.0], 300 vs 300 answers"}
    assert client.post(f"/v1/experiences/{EXPERIENCE}/resume", headers=delivery).status_code == 403
    assert client.post(f"/v1/experiences/{EXPERIENCE}/resume").status_code == 401
    unknown = client.post("/v1/experiences/no-such/resume", headers=admin)
    assert unknown.status_code == 404 and "no-such" in unknown.text
    assert client.post(f"/v1/experiences/{EXPERIENCE}/resume", headers=admin).json()["resumed"] == [1]


def test_status_follows_the_schedule_and_openapi_lists_the_fields(
    client: TestClient, admin: dict[str, str]
) -> None:
    listed = _listed(client, admin)
    assert {e["status"] for e in listed.values()} <= {"running", "scheduled", "ended"}
    schema = client.get("/schema/openapi.json").json()
    assert "/v1/experiences/{key}/resume" in schema["paths"]
    info = next(s for name, s in schema["components"]["schemas"].items() if name.endswith("ExperienceInfo"))
    assert {"status", "paused"} <= set(info["properties"])
    assert set(info["properties"]["status"]["enum"]) == {"running", "scheduled", "ended", "paused_by_guardrail"}
