"""A loop turn's trait merges ride in the round trip of that turn's profile reads (issue 22, real Valkey).

Before, the merges of a turn were a task, a pipeline and a round trip of their own beside the reads';
now, when reads are going out in the same turn, both scripts go in one pipeline, the merges first (so a
read of a visitor whose traits were just merged sees them). What stays as it was: each script's
errors are its own (a failing merge is logged, a failing read fails its readers), a flushed script
cache costs one more round trip for the calls it refused and nothing runs twice, merges over a batch
and merges with no reads in their turn go on their own."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from personalization.store.keys import profile_key, traits_key
from personalization.store.profiles import RedisProfileStore


class _Counting:
    """Counts the pipelines a client builds (one per round trip the store makes)."""

    def __init__(self, redis: Redis) -> None:
        self.pipelines = 0
        original = redis.pipeline

        def counting(*args: object, **kwargs: object) -> object:
            self.pipelines += 1
            return original(*args, **kwargs)

        redis.pipeline = counting  # type: ignore[method-assign]


async def _warm_store(redis: Redis) -> RedisProfileStore:
    """A store whose read and merge scripts are loaded (so the counts below are of calls, not loads)."""
    store = RedisProfileStore(redis)
    await store.load("warm")
    store.remember_traits("warm", {"plan": "plus"})
    await asyncio.sleep(0.05)  # a turn with merges and no reads: they go on their own
    return store


def test_reads_queued_first_take_the_turns_merges_into_their_round_trip(redis_url: str) -> None:
    async def body() -> tuple[list[object], int, int]:
        redis = Redis.from_url(redis_url)
        admin = Redis.from_url(redis_url)
        try:
            await admin.hset(profile_key("r1"), mapping={"visits": 3})
            store = await _warm_store(redis)
            counting = _Counting(redis)
            await admin.config_resetstat()
            reads = asyncio.ensure_future(asyncio.gather(store.load("m1"), store.load("r1"), store.load("m2")))
            await asyncio.sleep(0)  # the reads are queued, their send scheduled
            store.remember_traits("m1", {"plan": "pro", "n": 2})
            store.remember_traits("m2", {"tags": ["a"]})
            profiles = await reads
            stats = await admin.info("commandstats")
            return [p.traits for p in profiles] + [profiles[1].visits], counting.pipelines, stats["cmdstat_evalsha"]["calls"]
        finally:
            await redis.aclose()
            await admin.aclose()

    traits, pipelines, evalsha = asyncio.run(body())
    # One round trip, two script calls, and the reads saw the merges (sent before them in it).
    assert (pipelines, evalsha) == (1, 2)
    assert traits == [{"plan": "pro", "n": 2}, {}, {"tags": ["a"]}, 3]


def test_merges_queued_first_are_left_to_the_reads_of_the_same_turn(redis_url: str) -> None:
    """As in a worker: a request remembers its traits and, in the same step, a read is queued (its
    first await runs it at once); the merges' flush runs first, finds the read waiting, leaves them."""

    async def body() -> tuple[object, int, int]:
        redis = Redis.from_url(redis_url)
        admin = Redis.from_url(redis_url)
        try:
            store = await _warm_store(redis)
            counting = _Counting(redis)
            await admin.config_resetstat()
            store.remember_traits("m1", {"plan": "pro", "n": 2})
            store.remember_traits("m2", {"tags": ["a"]})
            first = await store.load("m1")
            stats = await admin.info("commandstats")
            return first.traits, counting.pipelines, stats["cmdstat_evalsha"]["calls"]
        finally:
            await redis.aclose()
            await admin.aclose()

    traits, pipelines, evalsha = asyncio.run(body())
    assert (pipelines, evalsha) == (1, 2)
    assert traits == {"plan": "pro", "n": 2}


def test_after_a_script_flush_both_are_reloaded_and_nothing_is_applied_twice(redis_url: str) -> None:
    async def body() -> tuple[list[object], dict[str, int]]:
        redis = Redis.from_url(redis_url)
        admin = Redis.from_url(redis_url)
        try:
            store = RedisProfileStore(redis)
            store.remember_traits("f1", {"n": 1})
            await asyncio.gather(store.load("warm"))
            await admin.script_flush()
            await admin.config_resetstat()
            store.remember_traits("f1", {"n": 2, "plan": "pro"})
            profiles = [await store.load("f1")]  # queued in the merge's step: one round trip for both
            stats = await admin.info("commandstats")
            return [p.traits for p in profiles], {
                "evalsha": stats["cmdstat_evalsha"]["calls"],
                "script_load": stats["cmdstat_script|load"]["calls"],
            }
        finally:
            await redis.aclose()
            await admin.aclose()

    traits, calls = asyncio.run(body())
    assert traits == [{"n": 2, "plan": "pro"}]
    # Both refused with NOSCRIPT, then both loaded and sent once more: 4 calls, each applied once.
    assert calls == {"evalsha": 4, "script_load": 2}


def test_a_failing_merge_is_logged_and_a_failing_read_fails_only_the_reads(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> tuple[object, object, object]:
        redis = Redis.from_url(redis_url)
        try:
            await redis.set(traits_key("broken"), "not a hash")  # its merge fails, its read fails
            store = RedisProfileStore(redis)
            await store.load("warm")
            store.remember_traits("broken", {"plan": "pro"})
            store.remember_traits("good", {"plan": "plus"})
            failed = await asyncio.gather(store.load("broken"), return_exceptions=True)
            store.remember_traits("good2", {"plan": "plus"})
            kept = await store.load("ok")
            return failed[0], (await store.load("good")).traits, (kept.visits, (await store.load("good2")).traits)
        finally:
            await redis.aclose()

    with caplog.at_level("WARNING", logger="vary.profiles"):
        failed, good, later = asyncio.run(body())
    assert type(failed).__name__ == "ResponseError" and "WRONGTYPE" in str(failed)
    assert good == {"plan": "plus"}  # the other merge of that round trip landed
    assert later == (0, {"plan": "plus"})  # the store still works
    assert [r.getMessage() for r in caplog.records] == ["remembering traits failed for 1 visitors (ResponseError)"]


def test_merges_over_a_batch_ride_in_part_and_all_land(redis_url: str) -> None:
    async def body() -> list[dict[str, object]]:
        redis = Redis.from_url(redis_url)
        try:
            store = RedisProfileStore(redis)
            n = store.MAX_BATCH + 40
            for i in range(n):
                store.remember_traits(f"b{i}", {"i": i})
            await store.load("reader")
            await asyncio.sleep(0.1)
            return [(await store.load(f"b{i}")).traits for i in range(n)]
        finally:
            await redis.aclose()

    traits = asyncio.run(body())
    assert traits == [{"i": i} for i in range(len(traits))]
