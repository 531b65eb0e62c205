"""Frequency caps: counted from the person's exposures on every channel by the exposure writer, read
with the profile, and past the cap the baseline is served with the reason."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from api.embedded.cluster import EmbeddedCluster
from api.redis_client import async_redis
from api.settings import Settings
from content.experiences.frequency_caps import parse_frequency_cap
from personalization.decision.frequency import buckets, cap_reached, exposure_counts
from personalization.decision.global_holdout import in_global_holdout
from personalization.decision.scoring import ActiveModel
from personalization.service import Personalizer
from personalization.store.exposures import ExposureWriter
from personalization.store.keys import profile_key
from personalization.store.profiles import RedisProfileStore
from personalization.types import Experience, Exposure, FrequencyCap, Visitor

MONDAY = 1_796_601_600.0  # 2026-12-07T00:00:00Z, a Monday
DAY = 86_400.0
HERO = Experience(
    id="e1", key="hero", name="Hero", type="personalization", variants=("heroB",), weights=(0.0, 1.0),
    frequency_cap=FrequencyCap(max_exposures=2, period="day"),
)
WEEKLY = Experience(
    id="e2", key="promo", name="Promo", type="ab_test", variants=("promoB",), weights=(0.5, 0.5),
    frequency_cap=FrequencyCap(max_exposures=3, period="week"),
)


class Catalog:
    def experiences_for(self, entry_id: str) -> tuple[Experience, ...]:
        return {"hero": (HERO,), "promo": (WEEKLY,)}.get(entry_id, ())


def test_buckets_are_utc_days_and_iso_weeks() -> None:
    assert buckets(MONDAY) == (buckets(MONDAY - 1)[0] + 1, buckets(MONDAY - 1)[1] + 1)  # Sunday → Monday
    assert buckets(MONDAY + 6 * DAY + 86_399)[1] == buckets(MONDAY)[1]  # the same week until Sunday night
    day, week = buckets(MONDAY)
    assert exposure_counts(f"{day} 2 {week} 5 9", MONDAY + 100) == {"day": 2, "week": 5, "campaign": 9}
    assert exposure_counts(f"{day} 2 {week} 5 9", MONDAY + DAY) == {"day": 0, "week": 5, "campaign": 9}
    assert exposure_counts(f"{day} 2 {week} 5 9", MONDAY + 7 * DAY) == {"day": 0, "week": 0, "campaign": 9}
    assert exposure_counts("garbage", MONDAY) == {"day": 0, "week": 0, "campaign": 0}


def test_cap_reached_reads_the_period_it_caps() -> None:
    def attributes(day: int, week: int, campaign: int) -> dict[str, Any]:
        return {"profile": {"exposures": {"hero": {"day": day, "week": week, "campaign": campaign}}}}

    assert cap_reached(HERO, attributes(1, 9, 9)) is None
    reason = cap_reached(HERO, attributes(2, 2, 2))
    assert reason is not None and reason.startswith("frequency cap: 'hero' is served at most 2 times per day")
    assert cap_reached(HERO, {"profile": {}}) is None
    campaign = Experience(id="e3", key="hero", name="H", type="ab_test", variants=("b",), weights=(0.5, 0.5),
                          frequency_cap=FrequencyCap(max_exposures=4, period="campaign"))
    assert "in this campaign" in (cap_reached(campaign, attributes(0, 0, 4)) or "")
    assert cap_reached(WEEKLY, {}) is None


@pytest.mark.parametrize(
    ("value", "cap", "problem"),
    [
        ({"max": 3, "per": "day"}, FrequencyCap(max_exposures=3, period="day"), None),
        ({"max": 1.0, "per": "campaign"}, FrequencyCap(max_exposures=1, period="campaign"), None),
        ({"max": 5}, FrequencyCap(max_exposures=5, period="day"), None),
        (None, None, None),
        ({"max": 0, "per": "day"}, None, "at least 1"),
        ({"max": 2.5, "per": "day"}, None, "whole number"),
        ({"max": 2, "per": "month"}, None, "per 'month'"),
        ({"max": 2, "per": "day", "extra": 1}, None, "cannot read"),
        ("3 per day", None, "cannot read"),
    ],
)
def test_the_content_field(value: object, cap: FrequencyCap | None, problem: str | None) -> None:
    parsed, problems = parse_frequency_cap(value)
    assert parsed == cap
    assert (problem is None and problems == []) or (problem is not None and problem in problems[0][0])


def visitor_outside_the_global_holdout(prefix: str) -> str:
    return next(f"{prefix}{i}" for i in range(100) if not in_global_holdout(f"{prefix}{i}", 0.05))


def test_a_cap_holds_across_channels_and_resets_the_next_day(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        writer = ExposureWriter(redis)
        writer.start()
        now = [MONDAY + 3600]
        personalizer = Personalizer(RedisProfileStore(redis), ActiveModel(), writer, clock=lambda: now[0])
        person = visitor_outside_the_global_holdout("fc-")

        async def serve(channel: str, visitor_id: str = person) -> tuple[str, str, str | None]:
            outcome = (await personalizer.personalize(Visitor(id=visitor_id, channel=channel), ["hero"], Catalog())).outcome
            await writer.flush()
            decision = outcome.decisions[0]
            return decision.variant_entry_id, decision.reason, decision.experience

        try:
            web, app, store = await serve("web"), await serve("ios"), await serve("store")
            assert web[0] == app[0] == "heroB" and web[2] == app[2] == "hero"
            assert store[0] == "hero" and store[2] is None  # the baseline, no exposure of the experience
            assert store[1].startswith("frequency cap: 'hero' is served at most 2 times per day")
            assert "seen it 2 times (all channels)" in store[1]
            assert (await serve("call_center"))[2] is None  # capped stays capped; the count stays at 2
            day, week = buckets(now[0])
            assert await redis.hget(profile_key(person), "f:hero") == f"{day} 2 {week} 2 2".encode()
            assert (await serve("web", "fc-other"))[0] == "heroB"  # another person is not capped
            now[0] += DAY  # the next UTC day: a new allowance
            assert (await serve("android"))[0] == "heroB"
            assert await redis.hget(profile_key(person), "f:hero") == f"{day + 1} 1 {week} 3 3".encode()
        finally:
            await writer.close()
            await redis.aclose()

    asyncio.run(body())


def test_a_replayed_batch_is_not_counted_twice(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        writer = ExposureWriter(redis)
        try:
            personalizer = Personalizer(
                RedisProfileStore(redis), ActiveModel(), writer, clock=lambda: MONDAY, global_holdout=0.05
            )
            person = visitor_outside_the_global_holdout("rp-")
            outcome = (await personalizer.personalize(Visitor(id=person), ["promo"], Catalog())).outcome
            assert {e.experience for e in outcome.exposures} == {"promo", "_global"}
            batch = [(exposure, None) for exposure in outcome.exposures]
            assert await writer._send("batch-1", batch) >= 1
            assert await writer._send("batch-1", batch) == 0  # the marker stops the replay, counters included
            day, week = buckets(MONDAY)
            assert await redis.hget(profile_key(person), "f:promo") == f"{day} 1 {week} 1 1".encode()
            assert await redis.hget(profile_key(person), "f:_global") is None  # the global holdout is not capped
        finally:
            await redis.aclose()

    asyncio.run(body())


def test_on_a_cluster_each_counter_is_written_in_its_visitor_slot(valkey_cluster: EmbeddedCluster) -> None:
    async def body() -> None:
        redis = async_redis(Settings(redis_url=valkey_cluster.url))
        try:
            people = [f"cl-{i}" for i in range(12)]
            await redis.delete(*(profile_key(p) for p in people))
            writer = ExposureWriter(redis)  # type: ignore[arg-type]
            writer.start()
            for ts in (MONDAY, MONDAY + 60):
                writer.submit([
                    Exposure(id=f"{p}-{ts}", ts=ts, visitor_id=p, session_id=None, channel="web", entry_id="hero",
                             experience="hero", variant=1, variant_entry_id="heroB", is_control=False,
                             holdout=False, propensity=1.0)
                    for p in people
                ])
            await writer.close()
            day, week = buckets(MONDAY)
            for person in people:
                assert await redis.hget(profile_key(person), "f:hero") == f"{day} 2 {week} 2 2".encode()
        finally:
            await redis.aclose()

    asyncio.run(body())
