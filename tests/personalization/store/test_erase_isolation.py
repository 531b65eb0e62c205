"""Erasing one visitor touches nothing of another whose id it prefixes (issue #17, items 1 and 4).

With the raw id as the hash tag, erasing ``kv-alice`` scanned ``vary:v:{kv-alice}:*``, which also
matches every key of ``kv-alice}:x`` (``vary:v:{kv-alice}:x}:p`` …): one erase deleted another
visitor's profile and attribution state. The tag is now a digest, so the pattern is exact.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from personalization.measurement.events import Conversion, PageView
from personalization.measurement.recorder import EventRecorder
from personalization.store.erasure import erase_visitor
from personalization.store.keys import profile_key, visitor_keys_pattern
from personalization.types import Exposure
from tests.personalization.measurement.aggregation_scenario import make, run
from tests.personalization.measurement.stream_writes import drain, push

T = time.time() - 3600
PAIRS = [("kv-alice", "kv-alice}:x"), ("a*", "ab"), ("}lead", "}lead}:p")]


def _exposure(visitor: str) -> Exposure:
    return Exposure(
        id=f"x-{visitor}", ts=T, visitor_id=visitor, session_id=None, channel="web", entry_id="hero-entry",
        variant_entry_id="hero-1", experience="hero", variant=1, is_control=False, holdout=False, propensity=0.5,
    )


def test_erase_leaves_a_visitor_whose_id_it_prefixes_untouched(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        visitors = [v for pair in PAIRS for v in pair]
        recorder = EventRecorder(redis)
        events = [PageView(visitor_id=v, session_id="s", ts=T + 1, event_id=f"p-{v}") for v in visitors]
        events += [Conversion(visitor_id=v, goal="signup", ts=T + 2, event_id=f"c-{v}") for v in visitors]
        assert await recorder.record(events) == len(events)
        await push(redis, [_exposure(v) for v in visitors], [], 1)
        await drain(make(redis, "a", partitions=1))

        async def keys_of(visitor: str) -> set[bytes]:
            return {k async for k in redis.scan_iter(match=visitor_keys_pattern(visitor))}

        before = {v: await keys_of(v) for v in visitors}
        assert all(len(keys) >= 4 for keys in before.values())  # profile, markers, state, outcomes
        for erased, other in PAIRS:
            result = await erase_visitor(redis, erased)
            assert result.keys_deleted >= len(before[erased]) and await keys_of(erased) == set()
            assert await keys_of(other) == before[other], (erased, other)
            assert await redis.hget(profile_key(other), "page_views") == b"1"
        await redis.aclose()

    run(body())
