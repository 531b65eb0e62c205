"""Phases against the real Valkey server: appended on assignment changes, never flipped back."""

from __future__ import annotations

import asyncio

import msgspec
from redis.asyncio import Redis

from personalization.decision.phases import assignment_fingerprint
from personalization.store.phases import current_phases, list_phases, record_phases
from personalization.types import Audience, Experience

HERO = Experience(
    id="e1", key="hero", name="Hero", type="ab_test", variants=("heroB",), weights=(0.5, 0.5), updated_at=100.0,
)


def _edit(experience: Experience, at: float, **changes: object) -> Experience:
    return msgspec.structs.replace(experience, updated_at=at, **changes)


def test_first_record_is_phase_one_and_a_weight_change_starts_phase_two(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        assert await record_phases(redis, [HERO], now=1000.0) == {"hero": 1}
        # the same set-up again, or an edit that does not change assignment: still phase 1
        renamed = _edit(HERO, 150.0, name="Hero banner", goals=("buy",))
        assert await record_phases(redis, [HERO, renamed], now=1100.0) == {"hero": 1}
        reweighted = _edit(HERO, 200.0, weights=(0.2, 0.8))
        assert await record_phases(redis, [reweighted], now=1200.0) == {"hero": 2}
        phases = await list_phases(redis, "hero")
        assert [p.phase for p in phases] == [1, 2]
        assert phases[0].fingerprint == assignment_fingerprint(HERO) and phases[0].changes == []
        assert phases[1].fingerprint == assignment_fingerprint(reweighted)
        assert phases[1].changes == ["weights 50%/50% → 20%/80%"]
        assert phases[1].started_at == 1200.0 and phases[1].started_at_iso == "1970-01-01T00:20:00Z"
        assert phases[1].updated_at == 200.0
        assert await current_phases(redis, ["hero", "never-seen"]) == {"hero": 2, "never-seen": 1}
        await redis.aclose()

    asyncio.run(body())


def test_a_worker_on_an_older_snapshot_cannot_flip_the_phase_back(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        audience = Audience(id="a", key="eu", name="EU", condition={"continent": "EU"})
        assert await record_phases(redis, [HERO], now=1000.0) == {"hero": 1}
        newer = _edit(HERO, 300.0, audience=audience)
        assert await record_phases(redis, [newer], now=1300.0) == {"hero": 2}
        assert await record_phases(redis, [HERO], now=1400.0) == {"hero": 2}  # updated_at 100 < 300
        assert await record_phases(redis, [_edit(HERO, None)], now=1400.0) == {"hero": 2}  # unknown: older
        # an edit back to the first set-up, made later, is a new phase (phases never reuse numbers)
        assert await record_phases(redis, [_edit(HERO, 400.0)], now=1500.0) == {"hero": 3}
        phases = await list_phases(redis, "hero")
        assert phases[1].changes == ["audience condition changed"]
        assert phases[2].fingerprint == phases[0].fingerprint
        await redis.aclose()

    asyncio.run(body())


def test_workers_applying_the_same_snapshot_at_once_append_one_phase(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        assert await record_phases(redis, [HERO], now=1000.0) == {"hero": 1}
        edited = _edit(HERO, 200.0, traffic_allocation=0.5)
        results = await asyncio.gather(*(record_phases(redis, [edited], now=1200.0) for _ in range(10)))
        assert results == [{"hero": 2}] * 10
        phases = await list_phases(redis, "hero")
        assert [p.phase for p in phases] == [1, 2]
        assert phases[1].changes == ["traffic allocation 100% → 50%"]
        await redis.aclose()

    asyncio.run(body())
