"""End to end at the aggregation level: simulated traffic → real streams → Aggregator → results.

Variants are assigned by the real hash (``assign_variant``); conversions are drawn from known rates.
A true effect (variant 1 converts 20 % more, in one segment only) must be found in that segment, and
A/A experiments (no effect) must come out non-significant at α = 0.05 in at least 18 of 20 seeded
runs (Binomial(20, 0.05) gives P(≤ 2 false positives) ≈ 0.92).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from redis.asyncio import Redis

from personalization.measurement.events import Conversion, Event
from personalization.measurement.results import ExperimentResults, experiment_results
from personalization.decision.selection import assign_variant
from personalization.types import Experience, Exposure
from tests.personalization.measurement.test_aggregation import T0, drain, exposure, make_aggregator, push

pytestmark = pytest.mark.slow

ALPHA = 0.05
BASE_RATE = 0.20
LIFT = 0.20
SEGMENT = "price_sensitive"


def ab_test(key: str) -> Experience:
    return Experience(
        id=f"id-{key}", key=key, name=key, type="ab_test", variants=(f"{key}-b",), weights=(0.5, 0.5),
        goals=("signup",),
    )


def simulate(
    exp: Experience, visitors: int, seed: int, lift_in_segment: float
) -> tuple[list[Exposure], list[Event]]:
    """One exposure per visitor; half the visitors are in SEGMENT; conversions at BASE_RATE, times
    (1 + lift) for variant 1 inside SEGMENT."""
    rng = np.random.default_rng(seed)
    in_segment = rng.random(visitors) < 0.5
    draws = rng.random(visitors)
    delays = rng.uniform(1.0, 3600.0, visitors)
    exposures: list[Exposure] = []
    events: list[Event] = []
    for i in range(visitors):
        visitor = f"{exp.key}-{i}"
        variant = assign_variant(exp, visitor).variant
        segments = {SEGMENT: 0.85} if in_segment[i] else {"loyal": 0.2}
        ts = T0 + i * 0.01
        exposures.append(exposure(visitor, variant, ts, experience=exp.key, segments=segments))
        rate = BASE_RATE * (1.0 + lift_in_segment) if variant == 1 and in_segment[i] else BASE_RATE
        if draws[i] < rate:
            events.append(Conversion(visitor_id=visitor, goal="signup", ts=ts + float(delays[i])))
    return exposures, events


async def _aggregate(redis_url: str, traffic: list[tuple[list[Exposure], list[Event]]],
                     experiences: list[Experience]) -> list[ExperimentResults]:
    redis = Redis.from_url(redis_url)
    try:
        for exposures, events in traffic:
            for start in range(0, len(exposures), 5000):
                await push(redis, exposures[start:start + 5000])
            for start in range(0, len(events), 5000):
                await push(redis, [], events[start:start + 5000])
        await drain(make_aggregator(redis, batch=1000))
        return [await experiment_results(redis, exp) for exp in experiences]
    finally:
        await redis.aclose()


def test_finds_a_lift_in_one_segment(redis_url: str) -> None:
    exp = ab_test("effect")
    traffic = simulate(exp, 20_000, seed=11, lift_in_segment=LIFT)
    (results,) = asyncio.run(_aggregate(redis_url, [traffic], [exp]))

    assert sum(results.visitors) == 20_000 and not results.srm_flag
    seg = results.breakdowns["segment"][SEGMENT]["signup"].variants[1]
    assert seg.p_value is not None and seg.p_value < ALPHA
    assert seg.uplift_interval[0] > 0 and seg.uplift_interval[0] < LIFT < seg.uplift_interval[1]
    assert seg.chance_to_beat_control > 0.95
    other = results.breakdowns["segment"]["none"]["signup"].variants[1]
    assert other.uplift_interval[0] < 0 < other.uplift_interval[1]  # no effect outside the segment


def test_a_a_tests_find_no_effect(redis_url: str) -> None:
    experiences = [ab_test(f"aa-{seed}") for seed in range(20)]
    traffic = [simulate(exp, 4_000, seed=100 + seed, lift_in_segment=0.0) for seed, exp in enumerate(experiences)]
    results = asyncio.run(_aggregate(redis_url, traffic, experiences))

    p_values = [r.goals["signup"].variants[1].p_value for r in results]
    assert all(p is not None for p in p_values)
    assert sum(p >= ALPHA for p in p_values) >= 18, p_values
    assert all(sum(r.visitors) == 4_000 for r in results)
