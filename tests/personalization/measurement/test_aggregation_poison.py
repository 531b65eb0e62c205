"""One poisoned stream entry cannot fail an aggregation round (issue #17, item 1).

Before: an entry whose own script call was refused stayed pending for ever — retried every
``claim_idle_ms``, holding back every event after it (``max_hold_s``) and stream trimming — and on a
cluster a call whose keys spanned slots made redis-py refuse the *whole* pipeline, so the round
failed and no entry of it was acknowledged. Now the entry alone is dead-lettered (logged with its
stream id, ``vary:agg:dead``, ``poisoned``) and the rest is counted and acknowledged.
"""

from __future__ import annotations

import logging
import time

import pytest
from redis.asyncio import Redis

from personalization.measurement import aggregate_steps
from personalization.measurement.events import Conversion
from personalization.store.keys import (
    AGG_DEAD_LETTERS,
    EVENTS,
    EXPOSURES,
    agg_key,
    outcome_key,
)
from personalization.store.retention import trim_streams
from personalization.types import Exposure
from tests.personalization.measurement.aggregation_scenario import make, pending, run
from tests.personalization.measurement.stream_writes import drain, push

T = time.time() - 3600


def _exposure(visitor: str, experience: str = "hero") -> Exposure:
    return Exposure(
        id=f"x-{visitor}", ts=T, visitor_id=visitor, session_id=None, channel="web", entry_id=f"{experience}-entry",
        variant_entry_id=f"{experience}-1", experience=experience, variant=1, is_control=False, holdout=False,
        propensity=0.5,
    )


def _conversion(visitor: str) -> Conversion:
    return Conversion(visitor_id=visitor, goal="signup", ts=T + 60, event_id=f"c-{visitor}")


def test_a_refused_entry_is_dead_lettered_and_the_round_goes_on(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A forced poisoned entry: visitor ``bad``'s step-1 outcome hash holds the wrong type, so the
    script refuses their entries before writing anything (``WRONGTYPE``), on every retry. Before,
    such an entry stayed pending for ever (claimed again every ``claim_idle_ms``), every event after
    it waited ``max_hold_s``, and trimming was held back. Now those entries alone are dead-lettered,
    logged with their stream ids and acknowledged; the other visitors' exposures and conversions in
    the same round are counted at once."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        visitors = ["good-1", "bad", "good-2"]
        await push(redis, [_exposure(v) for v in visitors], [_conversion(v) for v in visitors], 1)
        bad = {
            (stream, eid.decode())
            for stream in (EXPOSURES, EVENTS)
            for eid, f in await redis.xrange(stream)
            if b'"bad"' in f[b"data"]
        }
        for _, eid in bad:
            await redis.set(outcome_key("bad", eid), "not a hash")
        aggregator = make(redis, "a", partitions=1, max_hold_s=600.0)
        with caplog.at_level(logging.ERROR, logger="vary.aggregation"):
            for _ in range(3):  # a few rounds, not "until idle": before, the held events never left
                await aggregator.run_once()
        assert aggregator.poisoned == 2  # bad's exposure and conversion
        assert aggregator.failed == 0 and aggregator.held == 0
        assert await pending(redis, 1) == 0
        counts = {k.decode(): int(v) for k, v in (await redis.hgetall(agg_key("hero", "all"))).items()}
        assert counts["1:visitors"] == 2 and counts["1:conv:signup"] == 2
        dead = await redis.xrange(AGG_DEAD_LETTERS)
        assert {(f[b"stream"].decode(), f[b"id"].decode()) for _, f in dead} == bad and len(dead) == 2
        assert all(b"WRONGTYPE" in f[b"error"] for _, f in dead)
        logged = " ".join(r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage())
        assert all(eid in logged for _, eid in bad)
        await trim_streams(redis, [EXPOSURES, EVENTS], retention_s=0.0)
        assert await redis.xlen(EXPOSURES) == await redis.xlen(EVENTS) == 0  # nothing pending holds trimming
        await redis.aclose()

    run(body())


def test_transient_refusals_still_leave_the_entry_pending() -> None:
    """Only the entry's own faults dead-letter it; a server that cannot run anything now does not."""
    from redis.exceptions import (
        ClusterCrossSlotError,
        NoScriptError,
        RedisClusterException,
        ResponseError,
    )

    assert aggregate_steps.poisoned(ResponseError("Error running script (call to f_1): WRONGTYPE Operation"))
    assert aggregate_steps.poisoned(ClusterCrossSlotError("Keys in request don't hash to the same slot"))
    assert aggregate_steps.poisoned(RedisClusterException("EVALSHA - all keys must map to the same key slot"))
    assert not aggregate_steps.poisoned(ResponseError("OOM command not allowed when used memory > 'maxmemory'."))
    assert not aggregate_steps.poisoned(ResponseError("READONLY You can't write against a read only replica."))
    assert not aggregate_steps.poisoned(ResponseError("BUSY Redis is busy running a script."))
    assert not aggregate_steps.poisoned(NoScriptError("No matching script"))
    assert not aggregate_steps.poisoned(ConnectionError("lost"))


def test_a_cross_slot_entry_cannot_fail_the_round_on_a_real_cluster(valkey_cluster, monkeypatch) -> None:
    """The old key builders put ``}lead-brace`` in an empty hash tag: its step-1 call declares keys of
    several slots and redis-py refused the whole cluster pipeline ("all keys must map to the same key
    slot"), failing the round for every visitor in it. Forced back here, that entry alone is
    dead-lettered; the other visitors of the round are counted and nothing stays pending."""
    from api.redis_client import async_redis
    from api.settings import Settings

    def legacy_prefix(visitor_id: str) -> str:
        return f"vary:v:{{{visitor_id}}}:"

    def legacy_outcome_key(visitor_id: str, entry_id: str) -> str:
        return f"{legacy_prefix(visitor_id)}agg:{int(entry_id.split('-')[0]) // 86_400_000}"

    monkeypatch.setattr(aggregate_steps, "visitor_key_prefix", legacy_prefix)
    monkeypatch.setattr(aggregate_steps, "outcome_key", legacy_outcome_key)

    async def body() -> None:
        redis = async_redis(Settings(redis_url=valkey_cluster.url))
        await redis.flushall()
        try:
            visitors = ["v1", "}lead-brace", "v2", "v3"]
            await push(redis, [_exposure(v) for v in visitors], [], 1)
            aggregator = make(redis, "a", partitions=1)
            assert aggregator.cluster
            await drain(aggregator)
            assert aggregator.poisoned == 1 and aggregator.failed == 0
            assert await pending(redis, 1) == 0
            counts = await redis.hgetall(agg_key("hero", "all"))
            assert int(counts[b"1:visitors"]) == 3
            assert len(await redis.xrange(AGG_DEAD_LETTERS)) == 1
        finally:
            await redis.flushall()
            await redis.aclose()

    run(body())
