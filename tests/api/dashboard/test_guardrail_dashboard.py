"""The dashboard's guardrail and phase views, and its calls made from always-valid intervals only."""

from __future__ import annotations

import asyncio
import re
import time

import msgspec
from litestar.testing import TestClient
from redis.asyncio import Redis

from api.dashboard.calls import CALLS_NOTE, goal_call, variant_call
from personalization.measurement.results_counts import Counts
from personalization.measurement.results_goals import goal_result
from personalization.store.keys import phases_key
from personalization.store.pauses import pause_variant

EXPERIENCE = "banner-shipping-test"
REASON = "csat −12.0 pts [−18.1, −5.9], 412 vs 398 answers"


def _goal(conversions: list[int], visitors: int = 1000) -> object:
    raw = {}
    for v, x in enumerate(conversions):
        raw[f"{v}:visitors"], raw[f"{v}:conv:signup"] = str(visitors), str(x)
    return goal_result(Counts(raw), len(conversions) - 1, "signup", False, False)


def test_calls_come_from_the_sequential_interval_not_the_chance_to_beat_control() -> None:
    goal = _goal([100, 125, 200, 40])
    control, close, better, worse = goal.variants
    # 125 vs 100 in 1,000: very likely better by chance to beat control, not yet by the always-valid rule.
    assert close.chance_to_beat_control > 0.95 and close.sequential_interval[0] < 0 < close.sequential_interval[1]
    assert variant_call(close) == "no difference yet"
    assert variant_call(better) == "Variant 2 wins" and better.sequential_interval[0] > 0
    assert variant_call(worse) == "Variant 3 is worse" and worse.sequential_interval[1] < 0
    assert variant_call(control) == ""
    assert goal_call(goal) == "Variant 2 wins"
    assert goal_call(_goal([100, 125, 40])) == "Variant 2 is worse"
    # The most likely to beat control is variant 1 here, yet nothing is called.
    assert goal_call(_goal([100, 125, 110])) == "no difference yet"
    assert goal_call(_goal([0, 0], visitors=0)) is None


def _pause_and_phase(redis_url: str) -> None:
    async def body() -> None:
        async with Redis.from_url(redis_url) as redis:
            assert await pause_variant(redis, EXPERIENCE, 2, REASON, "csat", 2, time.time())
            phase = {"fingerprint": "f", "updated_at": None, "setup": {}}
            await redis.hset(phases_key(EXPERIENCE), mapping={
                "1": msgspec.json.encode({**phase, "phase": 1, "started_at": 1_780_000_000.0, "changes": []}),
                "2": msgspec.json.encode({**phase, "phase": 2, "started_at": 1_780_086_400.0,
                                          "changes": ["weights changed from 0.34/0.33/0.33 to 0.5/0.25/0.25"]}),
                "current": "2",
            })

    asyncio.run(body())


def test_a_pause_shows_as_a_badge_and_a_banner_with_the_phase_history(
    client: TestClient, redis_url: str, admin: dict[str, str]
) -> None:
    _pause_and_phase(redis_url)
    listing = client.get("/dashboard", headers=admin).text
    row = re.search(rf'<tr data-experience="{EXPERIENCE}">(.*?)</tr>', listing, re.DOTALL)
    assert row and '<span class="badge status-paused_by_guardrail">paused by guardrail</span>' in row.group(1)
    assert "always-valid" in listing and "to beat control" not in row.group(1)

    page = client.get(f"/dashboard/experiences/{EXPERIENCE}", headers=admin).text
    banner = re.search(r'<p class="alert pause-banner" role="alert" data-paused-variant="2">(.*?)</p>', page, re.DOTALL)
    assert banner, page
    assert "Variant 2 is paused by a guardrail" in banner.group(1) and REASON in banner.group(1)
    assert f"POST /v1/experiences/{EXPERIENCE}/resume" in banner.group(1)
    assert CALLS_NOTE in page
    phases = re.findall(r'<tr data-phase="(\d)"><th scope="row">(.*?)</th><td>(.*?)</td><td>(.*?)</td>', page)
    assert [p[0] for p in phases] == ["2", "1"] and "current" in phases[0][1] and "current" not in phases[1][1]
    assert phases[0][3] == "weights changed from 0.34/0.33/0.33 to 0.5/0.25/0.25" and phases[1][3] == "first phase"
    assert phases[0][2] == "2026-05-29 20:26"


def test_without_a_pause_there_is_no_banner(client: TestClient, admin: dict[str, str]) -> None:
    page = client.get(f"/dashboard/experiences/{EXPERIENCE}", headers=admin).text
    assert "data-paused-variant" not in page
    phases = re.findall(r'<tr data-phase="(\d)">', page)
    assert phases in ([], ["1"])  # phase 1 is recorded once a worker applied the snapshot
    listing = client.get("/dashboard", headers=admin).text
    row = re.search(rf'<tr data-experience="{EXPERIENCE}">(.*?)</tr>', listing, re.DOTALL)
    assert row and "status-running" in row.group(1)
