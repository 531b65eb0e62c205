"""The aggregation group over partitioned streams: many consumers, dead consumers and crashes between
the steps — against the real Valkey server. (Slot locality, a real cluster and the readers of
partitioned streams: ``test_aggregation_cluster.py``; the shared scenario: ``aggregation_scenario.py``.)"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from personalization.measurement.aggregate_steps import AggregateSteps
from personalization.measurement.aggregation import Aggregator
from personalization.store.keys import EVENTS, EXPOSURES
from personalization.store.partitions import all_streams
from tests.personalization.measurement.aggregation_scenario import (
    EVENTS_SET,
    EXPOSURES_SET,
    GROUP,
    N,
    baseline,
    make,
    pending,
    results,
    run,
)
from tests.personalization.measurement.stream_writes import drain, push


def test_scenario_is_rich_enough(redis_url: str) -> None:
    base = baseline(redis_url)
    hero = base["vary:agg:{hero}:all"]
    assert isinstance(hero, dict)
    assert {"0:visitors", "1:visitors", "2:visitors", "h:visitors", "0:anonymous"} <= set(hero)
    assert any(":conv:" in k for k in hero) and any(k.endswith(":buyers") for k in hero)
    assert any(k.endswith(":repeat_buyers") for k in hero) and "vary:agg:{hero}:ux:search" in base
    assert any(k.endswith(":xsum:purchase") for k in hero)  # pre-exposure values reached CUPED
    assert any(k.startswith("vary:cx:{w:") for k in base) and "vary:agg:content:all" in base


def test_two_consumers_on_four_partitions_equal_one(redis_url: str) -> None:
    expected = baseline(redis_url)

    async def body() -> tuple[dict[str, object], int, int, int]:
        redis = Redis.from_url(redis_url)
        await push(redis, EXPOSURES_SET, EVENTS_SET, N)
        a, b = make(redis, "a"), make(redis, "b")
        total = await drain(a, b)
        out = await results(redis)
        left = await pending(redis)
        await redis.aclose()
        return out, total, a.processed + b.processed, left

    got, total, processed, left = run(body())
    assert total == processed == len(EXPOSURES_SET) + len(EVENTS_SET)
    assert left == 0
    assert got == expected


@pytest.mark.parametrize("how", ["never acks", "cancelled mid-batch"])
def test_a_dead_consumers_entries_are_claimed_and_counted_once(redis_url: str, how: str) -> None:
    expected = baseline(redis_url)

    async def body() -> tuple[dict[str, object], int, int]:
        redis = Redis.from_url(redis_url)
        await push(redis, EXPOSURES_SET, EVENTS_SET, N)
        live = make(redis, "live", claim_idle_ms=0)
        await live.ensure_groups()
        if how == "never acks":  # read under its own name, then gone: the entries sit in its PEL
            streams = {s: ">" for s in all_streams(EXPOSURES, N) + all_streams(EVENTS, N)}
            got = await redis.xreadgroup(GROUP, "dead", streams, count=25)
            assert got
        else:  # a real consumer task, cancelled between step 1 and step 2 of its third batch
            dead = CancelledAggregator(redis, consumer="dead", partitions=N, exposure_grace_s=0.0, batch=10)
            task = asyncio.create_task(dead.run_forever(asyncio.Event(), block_ms=10))
            with pytest.raises(asyncio.CancelledError):
                await task
            assert dead.calls == 3 and dead.processed > 0
        stranded = await pending(redis)
        # Events wait while exposures are pending at the dead consumer; claiming them unblocks both.
        assert await live.claim_stale() > 0
        await drain(live)
        out = await results(redis)
        left = await pending(redis)
        await redis.aclose()
        return out, left, stranded

    got, left, stranded = run(body())
    assert stranded > 0  # the dead consumer really left work behind
    assert left == 0
    assert got == expected


def test_a_consumer_stopped_gracefully_hands_its_entries_back_to_be_claimed_at_once(redis_url: str) -> None:
    """A stopped worker's consumer name is never seen again (host, pid): what it read and did not
    acknowledge used to wait ``claim_idle_ms`` (5 minutes) for another consumer's claim."""
    expected = baseline(redis_url)

    async def body() -> tuple[dict[str, object], int, int, int, int, int]:
        redis = Redis.from_url(redis_url)
        await push(redis, EXPOSURES_SET, EVENTS_SET, N)
        stopping = CancelledAggregator(redis, consumer="stopping", partitions=N, exposure_grace_s=0.0, batch=10)
        task = asyncio.create_task(stopping.run_forever(asyncio.Event(), block_ms=10))
        with pytest.raises(asyncio.CancelledError):
            await task
        successor = make(redis, "successor")  # the default claim_idle_ms: five minutes
        await successor.ensure_groups()
        too_early = await successor.claim_stale()  # nothing is idle long enough yet
        stranded = await pending(redis)
        handed = await stopping.hand_back()
        claimed = await successor.claim_stale()
        await drain(successor)
        out = await results(redis)
        left = await pending(redis)
        await redis.aclose()
        return out, too_early, stranded, handed, claimed, left

    got, too_early, stranded, handed, claimed, left = run(body())
    assert too_early == 0
    assert stranded > 0 and handed == stranded  # every unacknowledged entry, none acknowledged
    assert claimed > 0 and left == 0  # claimed at once and counted
    assert got == expected


class _Crash(Exception):
    """The process dies here (a fault injected between two steps; Redis keeps what was written)."""


class CrashingSteps(AggregateSteps):
    """Dies on its ``crash_call``-th step-2 call, before it (after step 1) or after it (before XACK)."""

    crash_call = 0
    after_step2 = False
    calls = 0

    async def _apply(self, items) -> None:
        self.calls += 1
        if self.calls == self.crash_call and not self.after_step2:
            raise _Crash
        await super()._apply(items)
        if self.calls == self.crash_call:
            raise _Crash


class CrashingAggregator(Aggregator):
    """An aggregator whose steps are :class:`CrashingSteps`."""

    def __init__(self, *args, crash_call: int, after_step2: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._steps.__class__ = CrashingSteps  # the fault sits between the steps
        self._steps.crash_call = crash_call
        self._steps.after_step2 = after_step2


class CancelledSteps(AggregateSteps):
    """Its task is cancelled (for real) when it reaches step 2 of its third step-2 call."""

    calls = 0

    async def _apply(self, items) -> None:
        self.calls += 1
        if self.calls == 3:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)  # the cancellation lands here
        await super()._apply(items)


class CancelledAggregator(Aggregator):
    """An aggregator whose steps are :class:`CancelledSteps`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._steps.__class__ = CancelledSteps

    @property
    def calls(self) -> int:
        return self._steps.calls


@pytest.mark.parametrize("crash_call", [1, 2], ids=["exposures", "events"])
@pytest.mark.parametrize("after_step2", [False, True], ids=["after-step-1", "after-step-2"])
def test_a_crash_between_steps_counts_once(redis_url: str, crash_call: int, after_step2: bool) -> None:
    expected = baseline(redis_url)

    async def body() -> tuple[dict[str, object], int]:
        redis = Redis.from_url(redis_url)
        await push(redis, EXPOSURES_SET, EVENTS_SET, N)
        crashy = CrashingAggregator(
            redis, consumer="crashy", partitions=N, exposure_grace_s=0.0, batch=500,
            crash_call=crash_call, after_step2=after_step2,
        )
        with pytest.raises(_Crash):
            await crashy.run_once()
        live = make(redis, "live", claim_idle_ms=0)
        await live.claim_stale()  # the dead consumer's entries: their stored outcomes are completed
        await drain(live)
        out = await results(redis)
        left = await pending(redis)
        await redis.aclose()
        return out, left

    got, left = run(body())
    assert left == 0
    assert got == expected


def test_a_restarted_consumer_completes_its_own_pending_entries(redis_url: str) -> None:
    """The same consumer name after a crash re-reads its own PEL on the first run (no claim needed)."""
    expected = baseline(redis_url)

    async def body() -> dict[str, object]:
        redis = Redis.from_url(redis_url)
        await push(redis, EXPOSURES_SET, EVENTS_SET, N)
        crashy = CrashingAggregator(redis, consumer="same", partitions=N, exposure_grace_s=0.0, batch=500,
                                    crash_call=1, after_step2=False)
        with pytest.raises(_Crash):
            await crashy.run_once()
        await drain(make(redis, "same"))
        out = await results(redis)
        assert await pending(redis) == 0
        await redis.aclose()
        return out

    assert run(body()) == expected
