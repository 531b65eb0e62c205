"""Stream retention on a real Valkey: entries past the retention go, unless a consumer group still
needs them (pending, or not yet delivered); streams without groups are trimmed by age alone."""

from __future__ import annotations

import asyncio
import os

from redis.asyncio import Redis

from personalization.store.retention import StreamRetention, oldest_needed, trim_streams

DAY_MS = 86_400_000
NOW_S = 100 * 86_400.0  # the clock the tests run at: day 100


async def _stream_of_days(redis: Redis, name: str, days: range) -> None:
    """One entry per day, with explicit ids (milliseconds), so ages are exact."""
    await redis.delete(name)
    for day in days:
        await redis.xadd(name, {"data": f"day {day}"}, id=f"{day * DAY_MS}-0")


async def _days_left(redis: Redis, name: str) -> list[int]:
    return [int(entry_id.decode().split("-")[0]) // DAY_MS for entry_id, _ in await redis.xrange(name)]


def test_without_groups_entries_past_the_retention_are_trimmed(redis_url: str) -> None:
    async def body() -> tuple[list[int], int]:
        redis = Redis.from_url(redis_url)
        name = f"vary:test:retention:plain:{os.getpid()}"
        try:
            await _stream_of_days(redis, name, range(80, 100))
            [result] = await trim_streams(redis, [name], retention_s=10 * 86_400, now=NOW_S)
            assert result.held_by is None and result.cutoff == f"{90 * DAY_MS}-0"
            return await _days_left(redis, name), result.trimmed
        finally:
            await redis.delete(name)
            await redis.aclose()

    left, trimmed = asyncio.run(body())
    assert left == list(range(90, 100)) and trimmed == 10


def test_a_group_that_has_not_read_or_acknowledged_old_entries_holds_them(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        name = f"vary:test:retention:groups:{os.getpid()}"
        try:
            await _stream_of_days(redis, name, range(80, 100))
            await redis.xgroup_create(name, "fast", id="0")
            await redis.xgroup_create(name, "slow", id="0")
            # "fast" read and acknowledged everything; "slow" read days 80-84, acknowledged 80-81
            for entry_id, _ in (await redis.xreadgroup("fast", "c", {name: ">"}))[0][1]:
                await redis.xack(name, "fast", entry_id)
            read = (await redis.xreadgroup("slow", "c", {name: ">"}, count=5))[0][1]
            await redis.xack(name, "slow", read[0][0], read[1][0])
            assert await oldest_needed(redis, name) == ((82 * DAY_MS, 0), "slow")  # its oldest pending

            [held] = await trim_streams(redis, [name], retention_s=10 * 86_400, now=NOW_S)
            assert held.held_by == "slow" and held.trimmed == 2
            assert await _days_left(redis, name) == list(range(82, 100))

            # "slow" acknowledges what it holds: now only undelivered entries (after day 84) hold back
            await redis.xack(name, "slow", *(entry_id for entry_id, _ in read[2:]))
            [later] = await trim_streams(redis, [name], retention_s=10 * 86_400, now=NOW_S)
            assert later.held_by == "slow" and later.cutoff == f"{84 * DAY_MS}-1"
            assert await _days_left(redis, name) == list(range(85, 100))

            # it catches up: the retention alone decides
            for entry_id, _ in (await redis.xreadgroup("slow", "c", {name: ">"}))[0][1]:
                await redis.xack(name, "slow", entry_id)
            [caught_up] = await trim_streams(redis, [name], retention_s=10 * 86_400, now=NOW_S)
            assert caught_up.held_by is None
            assert await _days_left(redis, name) == list(range(90, 100))
        finally:
            await redis.delete(name)
            await redis.aclose()

    asyncio.run(body())


def test_the_background_pass_trims_every_stream_and_counts(redis_url: str) -> None:
    async def body() -> tuple[int, list[list[int]]]:
        redis = Redis.from_url(redis_url)
        names = [f"vary:test:retention:bg:{os.getpid()}:{k}" for k in range(2)]
        try:
            for name in names:
                await _stream_of_days(redis, name, range(95, 100))
            retention = StreamRetention(redis, [*names, f"{names[0]}:missing"], retention_s=2 * 86_400, every_s=60, clock=lambda: NOW_S)
            stop = asyncio.Event()
            task = asyncio.create_task(retention.run_forever(stop))
            for _ in range(100):
                await asyncio.sleep(0.01)
                if retention.trimmed:
                    break
            stop.set()
            await asyncio.wait_for(task, 5)
            assert retention.failed_passes == 0
            return retention.trimmed, [await _days_left(redis, name) for name in names]
        finally:
            await redis.delete(*names)
            await redis.aclose()

    trimmed, left = asyncio.run(body())
    assert trimmed == 6 and left == [[98, 99], [98, 99]]
