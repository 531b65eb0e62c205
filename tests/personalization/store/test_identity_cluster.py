"""Linking on the embedded 3-node cluster: every command of a link, of the merged profile read and of
finding a person's ids for erasure stays within one slot (a cross-slot command would fail here)."""

from __future__ import annotations

import asyncio

from api.embedded.cluster import EmbeddedCluster
from api.redis_client import async_redis, sync_redis
from api.settings import Settings
from personalization.store.erasure import people_to_erase
from personalization.store.identity import link, person_of_user, resolve
from personalization.store.keys import profile_key, visitor_key_prefix
from personalization.store.profiles import RedisProfileStore


def test_link_and_merged_read_on_a_cluster(valkey_cluster: EmbeddedCluster) -> None:
    settings = Settings(redis_url=valkey_cluster.url)
    sync = sync_redis(settings)
    sync.flushall()
    ids = [f"cluster-dev-{i}" for i in range(6)]  # spread over the nodes' slots
    for i, visitor in enumerate(ids):
        sync.hset(profile_key(visitor), mapping={"visits": 1, "first_seen": 100 + i, "last_seen": 200 + i,
                                                 f"ch:{'web' if i % 2 else 'ios'}": 1, "a:hero": i % 2})
        sync.hset(visitor_key_prefix(visitor) + "x", "hero", f"{i % 2}|{100 + i}|999|web|none")
    sync.close()

    async def run() -> None:
        redis = async_redis(settings)
        try:
            for visitor in ids:
                await link(redis, visitor, "cust-cluster", ttl_s=3600)
            person = await person_of_user(redis, "cust-cluster", create=False)
            assert person is not None
            assert await resolve(redis, ids) == dict.fromkeys(ids, person)
            for coalesce in (True, False):
                profile = await RedisProfileStore(redis, coalesce=coalesce).load(ids[3])
                assert getattr(profile, "person", None) == person
                assert profile.visits == 6 and profile.channels == ("ios", "web")
                assert profile.assignments == {"hero": 0} and profile.first_seen == 100  # the first-seen id's
            assert await redis.hget(visitor_key_prefix(person) + "x", "hero") == b"0|100|999|web|none"
            found, user = await people_to_erase(redis, ids[2])
            assert set(found) == {*ids, person} and user == "cust-cluster"
        finally:
            await redis.aclose()

    asyncio.run(run())
