"""The schema 1 → 2 migration (``personalization/store/migrate.py``): keys written by the old builders,
with their exact strings (``vary:v:{<raw visitor id>}:<suffix>``), are found under the new names by
profile reads, aggregation (results) and erasure — on a single server and on a real 3-node cluster."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from personalization.measurement.events import Conversion
from personalization.store.erasure import erase_visitor
from personalization.store.keys import (
    LEGACY_VISITOR_PATTERN,
    SCHEMA_KEY,
    agg_key,
    event_marker_key,
    profile_key,
    visitor_key_prefix,
)
from personalization.store.migrate import migrate, schema_version
from personalization.store.profiles import RedisProfileStore
from tests.personalization.measurement.aggregation_scenario import make, run
from tests.personalization.measurement.stream_writes import drain, push

T = time.time() - 3600
#: A brace at the start (the cluster poison), braces and a colon inside, and a pair where one id
#: prefixes the other (the old SCAN pattern of ``kv-alice`` matched ``kv-alice}:x``'s keys).
VISITORS = ["v1", "}lead-brace", "a{b}:c", "kv-alice", "kv-alice}:x"]


def legacy(visitor: str, suffix: str) -> str:
    """The schema-1 builders' exact string."""
    return "vary:v:{" + visitor + "}:" + suffix


async def write_legacy(redis: Redis) -> None:
    for i, visitor in enumerate(VISITORS):
        await redis.hset(legacy(visitor, "p"), mapping={"visits": i + 1, "a:hero": 1})
        await redis.expire(legacy(visitor, "p"), 86_400)
        await redis.set(legacy(visitor, "e:ev-1"), 1, ex=600)
        await redis.hset(legacy(visitor, "x"), "hero", f"1|{T}|{T + 7 * 86_400}|web|none")


async def legacy_keys(redis: Redis) -> list[bytes]:
    """Every schema-1 visitor key (a cluster client scans every primary)."""
    return [key async for key in redis.scan_iter(match=LEGACY_VISITOR_PATTERN)]


async def check_migrated(redis: Redis) -> None:
    assert await schema_version(redis) == 1
    done = await migrate(redis)
    assert done is not None and done.moved == 3 * len(VISITORS) and done.skipped == 0
    assert await schema_version(redis) == 2 and await legacy_keys(redis) == []
    profiles = RedisProfileStore(redis)
    for i, visitor in enumerate(VISITORS):
        profile = await profiles.load(visitor)
        assert profile.visits == i + 1 and profile.assignments == {"hero": 1}, visitor
        assert 86_000 < await redis.ttl(profile_key(visitor)) <= 86_400  # TTL kept
        assert 0 < await redis.ttl(event_marker_key(visitor, "ev-1")) <= 600
    assert await migrate(redis) is None  # once: vary:schema says it is done


def test_migration_on_a_single_server(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        await write_legacy(redis)
        await check_migrated(redis)

        # Results: the migrated exposure state attributes conversions sent after the upgrade.
        await push(redis, [], [Conversion(visitor_id=v, goal="signup", ts=T + 60) for v in VISITORS], 1)
        await drain(make(redis, "a", partitions=1))
        assert int(await redis.hget(agg_key("hero", "all"), "1:conv:signup")) == len(VISITORS)

        # Erase finds every migrated key of kv-alice and none of kv-alice}:x.
        erased = await erase_visitor(redis, "kv-alice")
        assert erased.keys_deleted >= 3 and not await redis.exists(profile_key("kv-alice"))
        assert (await profiles_of(redis, "kv-alice}:x")).visits == 5

        # Idempotent even when forced again: nothing of schema 1 is left to move.
        await redis.delete(SCHEMA_KEY)
        again = await migrate(redis)
        assert again is not None and again.moved == again.merged == 0
        await redis.aclose()

    run(body())


async def profiles_of(redis: Redis, visitor: str):
    return await RedisProfileStore(redis).load(visitor)


def test_a_key_written_by_the_new_version_first_is_merged(redis_url: str) -> None:
    """A worker of this version wrote the visitor's profile before the migration reached it: the
    newer fields win, the old ones it lacks are kept, the old key is gone."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        await redis.hset(legacy("v9", "p"), mapping={"visits": 1, "a:hero": 2})
        await redis.hset(profile_key("v9"), mapping={"visits": 9})
        done = await migrate(redis)
        assert done is not None and done.merged == 1
        assert await redis.hgetall(profile_key("v9")) == {b"visits": b"9", b"a:hero": b"2"}
        assert await legacy_keys(redis) == []
        await redis.aclose()

    run(body())


def test_migration_on_a_real_cluster(valkey_cluster) -> None:
    """On a cluster the old and new names sit in different slots (RENAME cannot cross them): every
    primary is scanned and each key copied with DUMP/RESTORE, TTL kept, then deleted."""
    from api.redis_client import async_redis
    from api.settings import Settings

    async def body() -> None:
        redis = async_redis(Settings(redis_url=valkey_cluster.url))
        await redis.flushall()
        try:
            await write_legacy(redis)
            await check_migrated(redis)
            for visitor in VISITORS:  # every key of a visitor in one slot, whatever the id
                assert await redis.hget(visitor_key_prefix(visitor) + "x", "hero")
            erased = await erase_visitor(redis, "kv-alice")
            assert erased.keys_deleted == 3
            assert await redis.exists(profile_key("kv-alice}:x"))
        finally:
            await redis.flushall()
            await redis.aclose()

    run(body())
