"""Results by phase: the current phase by default, an earlier one on request, never a mix; a phase the
experience never had is an error naming ``phase``."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from redis.asyncio import Redis

from personalization.errors import InvalidInput
from personalization.measurement.results import ExperimentResults, experiment_results
from personalization.store.keys import agg_key, phases_key
from personalization.types import phase_key
from tests.personalization.measurement.test_results import experience


def _read(redis_url: str, phases: dict[int, dict] | None, current: int | None, **kwargs) -> ExperimentResults:
    exp = experience()

    async def body() -> ExperimentResults:
        redis = Redis.from_url(redis_url)
        try:
            # Phase 1 (the old keys) and phase 2 (``hero@p2``) hold different counts.
            await redis.hset(agg_key(phase_key(exp.key, 1), "all"), mapping={"0:visitors": 100, "1:visitors": 110,
                                                                              "1:conv:signup": 20, "0:conv:signup": 10})
            await redis.hset(agg_key(phase_key(exp.key, 2), "all"), mapping={"0:visitors": 40, "1:visitors": 35,
                                                                              "1:conv:signup": 7, "0:conv:signup": 3})
            for n, record in (phases or {}).items():
                await redis.hset(phases_key(exp.key), str(n), msgspec.json.encode(record))
            if current is not None:
                await redis.hset(phases_key(exp.key), "current", current)
            return await experiment_results(redis, exp, **kwargs)
        finally:
            await redis.aclose()

    return asyncio.run(body())


RECORDS = {
    1: {"phase": 1, "fingerprint": "a", "started_at": 1_764_000_000.0, "updated_at": None, "changes": []},
    2: {"phase": 2, "fingerprint": "b", "started_at": 1_764_500_000.0, "updated_at": 1_764_499_000.0,
        "changes": ["weights: 0.5/0.5 -> 0.3/0.7"]},
}


def test_current_phase_by_default_and_earlier_on_request(redis_url: str) -> None:
    current = _read(redis_url, RECORDS, 2)
    assert current.phase == 2 and current.visitors == [40, 35] and current.experience == "hero"
    assert [p.phase for p in current.phases] == [1, 2] and current.phases[1].changes == RECORDS[2]["changes"]
    assert current.phases[1].started_at_iso == "2025-11-30T10:53:20Z"
    first = _read(redis_url, RECORDS, 2, phase=1)
    assert first.phase == 1 and first.visitors == [100, 110]
    assert first.goals["signup"].variants[1].conversions == 20


def test_without_phase_records_everything_is_phase_1(redis_url: str) -> None:
    results = _read(redis_url, None, None)
    assert results.phase == 1 and results.phases == [] and results.visitors == [100, 110]
    assert _read(redis_url, None, None, phase=1).visitors == [100, 110]


@pytest.mark.parametrize("phase", [0, 3, 99])
def test_a_phase_that_does_not_exist_names_phase(redis_url: str, phase: int) -> None:
    with pytest.raises(InvalidInput, match="phase") as raised:
        _read(redis_url, RECORDS, 2, phase=phase)
    assert [p.key for p in raised.value.problems] == ["phase"]
