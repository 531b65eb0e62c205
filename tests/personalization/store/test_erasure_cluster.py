"""The whole erase (#17.4) on the embedded 3-node cluster: every command stays within one slot.

Dead letters are found by a ``SCAN`` over every node, stream markers are deleted in their stream's
slot, problem tags in their experience's slot, erase notices go to their own stream, and the AOF
step recognises a server that is not Vary's embedded single node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.embedded.cluster import EmbeddedCluster
from api.embedded.valkey import rewrite_aof_after_erase
from api.redis_client import async_redis, sync_redis
from api.settings import Settings
from personalization.measurement.events import EVENT_ENCODER, Feedback
from personalization.store.erase_copies import erase_everywhere
from personalization.store.keys import (
    EVENTS,
    SINK_ERASURES,
    agg_key,
    dead_letter_stream,
    event_marker_key,
    event_stream_marker,
    profile_key,
    visitor_key_prefix,
)

GONE, KEPT = "}forget-me-cluster", "keep-me-cluster"


@pytest.fixture
def cluster_settings(valkey_cluster: EmbeddedCluster) -> Iterator[Settings]:
    settings = Settings(redis_url=valkey_cluster.url)
    client = sync_redis(settings)
    client.flushall()
    client.close()
    yield settings


def test_erase_everywhere_on_a_cluster_touches_only_the_visitor(cluster_settings: Settings, tmp_path: Path) -> None:
    sync = sync_redis(cluster_settings, decode_responses=True)
    try:
        for visitor in (GONE, KEPT):
            feedback = Feedback(visitor_id=visitor, text="t", problem=f"tag {visitor}", touchpoint="cart",
                                event_id=f"fb-{visitor}", ts=1_780_000_100.0)
            sync.xadd(EVENTS, {"data": EVENT_ENCODER.encode(feedback)})
            sync.set(event_marker_key(visitor, f"fb-{visitor}"), 1)
            sync.set(event_stream_marker(EVENTS, visitor, f"fb-{visitor}"), 1)
            sync.hset(profile_key(visitor), "visits", 1)
            sync.hset(visitor_key_prefix(visitor) + "x", "hero", "1|1780000000.0|1790000000.0|web|loyal")
            sync.sadd(agg_key("hero", "problems:1:cart"), f"tag {visitor}")
            sync.xadd(dead_letter_stream("webhook"), {"data": EVENT_ENCODER.encode(feedback), "kind": "event"})

        async def run() -> tuple[object, str]:
            redis = async_redis(cluster_settings)
            try:
                erased = await erase_everywhere(redis, GONE, data_dir=tmp_path)
                return erased, await rewrite_aof_after_erase(redis, tmp_path)
            finally:
                await redis.aclose()

        erased, aof = asyncio.run(run())
        assert erased.events_deleted == 1 and erased.keys_deleted == 3  # profile, :x, event marker
        assert erased.markers_deleted == 1 and erased.problem_tags_removed == 1
        assert erased.dead_letters_deleted == 1 and aof == "external"
        assert sync.smembers(agg_key("hero", "problems:1:cart")) == {f"tag {KEPT}"}
        assert not sync.exists(event_stream_marker(EVENTS, GONE, f"fb-{GONE}"))
        assert sync.exists(event_stream_marker(EVENTS, KEPT, f"fb-{KEPT}"), profile_key(KEPT)) == 2
        assert [f["data"] for _, f in sync.xrange(dead_letter_stream("webhook"))] == [
            EVENT_ENCODER.encode(Feedback(visitor_id=KEPT, text="t", problem=f"tag {KEPT}", touchpoint="cart",
                                          event_id=f"fb-{KEPT}", ts=1_780_000_100.0)).decode()
        ]
        assert sync.xlen(SINK_ERASURES) == 0  # no sink configured: nobody is owed the notice
    finally:
        sync.close()
