"""Guardrail pauses against the real Valkey server: one winner per pause, resume is remembered."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from personalization.store.keys import GUARDRAIL_PAUSES_KEY, GUARDRAIL_RESUMED_KEY
from personalization.store.pauses import (
    load_pause_records,
    load_pauses,
    pause_variant,
    resume,
    resumed,
)

REASON = "paused: guardrail csat harmed (CSAT 3.1 vs 4.2, sequential p = 0.003)"


def test_only_the_caller_that_paused_returns_true(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        results = await asyncio.gather(
            *(pause_variant(redis, "hero", 1, REASON, "csat", 1, 100.0 + i) for i in range(20))
        )
        assert sorted(results) == [False] * 19 + [True]
        # another variant of the same experience is its own pause, kept beside the first
        assert await pause_variant(redis, "hero", 2, "paused: guardrail ces harmed (x)", "ces", 1, 200.0)
        assert await load_pauses(redis) == {"hero": {1: REASON, 2: "paused: guardrail ces harmed (x)"}}
        records = await load_pause_records(redis)
        assert records["hero"][2].metric == "ces" and records["hero"][2].at == 200.0
        await redis.aclose()

    asyncio.run(body())


def test_resume_lifts_and_is_remembered_per_phase(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        assert await pause_variant(redis, "hero", 1, REASON, "csat", 2, 100.0)
        assert await pause_variant(redis, "side", 1, REASON, "nps", 1, 100.0)
        assert await resume(redis, "hero", 2, now=150.0) == [1]
        assert await load_pauses(redis) == {"side": {1: REASON}}
        assert await redis.hget(GUARDRAIL_RESUMED_KEY, "hero@p2:1:csat") == b"150.0"
        assert await resumed(redis, "hero", 2) == {(1, "csat")}
        assert await resumed(redis, "hero", 1) == set()
        # the same guardrail does not pause it again in that phase; another guardrail, or the next phase, may
        assert not await pause_variant(redis, "hero", 1, REASON, "csat", 2, 160.0)
        assert await load_pauses(redis) == {"side": {1: REASON}}
        assert await pause_variant(redis, "hero", 1, "paused: guardrail nps harmed (y)", "nps", 2, 170.0)
        assert await resume(redis, "nothing-paused", 1) == []
        await redis.aclose()

    asyncio.run(body())


def test_load_pauses_keeps_only_the_current_phase_when_asked(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url, decode_responses=True)
        assert await pause_variant(redis, "hero", 1, REASON, "csat", 1, 100.0)
        assert await pause_variant(redis, "hero", 2, "paused: p2", "csat", 2, 100.0)
        assert await load_pauses(redis, {"hero": 2}) == {"hero": {2: "paused: p2"}}
        assert await load_pauses(redis, {}) == {"hero": {1: REASON}}
        # a field Vary never wrote is no pause (and no error)
        await redis.hset(GUARDRAIL_PAUSES_KEY, "junk", "{not json")
        assert "junk" not in await load_pauses(redis)
        await redis.aclose()

    asyncio.run(body())


def test_variant_zero_cannot_be_paused(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        with pytest.raises(ValueError, match="baseline"):
            await pause_variant(redis, "hero", 0, REASON, "csat", 1, 1.0)
        assert await load_pauses(redis) == {}
        await redis.aclose()

    asyncio.run(body())


class _ResumedDuringCheck:
    """The monitor's Redis, with a person's resume landing right after the monitor's first "was this
    resumed?" look and before its pause (the CI race of the guardrail e2e test, made certain)."""

    def __init__(self, redis: Redis, experience: str, phase: int) -> None:
        self._redis, self._experience, self._phase = redis, experience, phase
        self.resumed: list[int] | None = None

    async def hexists(self, key: str, field: str) -> bool:
        found = bool(await self._redis.hexists(key, field))
        if self.resumed is None:
            self.resumed = await resume(self._redis, self._experience, self._phase)
        return found

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else is the real client
        return getattr(self._redis, name)


def test_a_resume_between_the_monitors_check_and_its_pause_is_not_undone(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        assert await pause_variant(redis, "hero", 1, REASON, "csat", 1, 100.0)  # the first pause
        racing = _ResumedDuringCheck(redis, "hero", 1)
        # The next monitor round still sees the harm and pauses again; the person resumes meanwhile.
        assert await pause_variant(racing, "hero", 1, REASON, "csat", 1, 101.0) is False  # type: ignore[arg-type]
        assert racing.resumed == [1]
        assert await load_pauses(redis) == {}  # the resume stands
        assert await resumed(redis, "hero", 1) == {(1, "csat")}
        # A pause of another variant made meanwhile is not taken back by the first's undo.
        assert await pause_variant(redis, "hero", 2, "paused: guardrail ces harmed (x)", "ces", 1, 102.0)
        assert await load_pauses(redis) == {"hero": {2: "paused: guardrail ces harmed (x)"}}
        await redis.aclose()

    asyncio.run(body())
