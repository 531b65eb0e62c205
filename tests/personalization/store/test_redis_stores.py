"""Profiles, event recording and exposure writing against the real Valkey server."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from redis.asyncio import Redis

from personalization.measurement.events import Conversion, PageView, Survey
from personalization.store.exposures import EXPOSURE_STREAM, ExposureWriter
from personalization.types import new_exposure_id
from personalization.measurement.recorder import EventProblem, EventRecorder, check_event
from personalization.store.profiles import RedisProfileStore
from personalization.store.keys import profile_key
from personalization.types import EXPOSURE_DECODER, Exposure


def _run(coro):  # noqa: ANN001, ANN202 - small helper for async bodies
    return asyncio.run(coro)


def _exposure(i: int, visitor: str = "v1") -> Exposure:
    return Exposure(
        id=new_exposure_id(), ts=1000.0 + i, visitor_id=visitor, session_id=None, channel="web",
        entry_id="hero", variant_entry_id="hero", experience="exp", variant=0, is_control=True,
        holdout=False, propensity=1.0,
    )


def test_events_update_profile_and_stream_idempotently(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        recorder = EventRecorder(redis)
        store = RedisProfileStore(redis)
        events = [
            PageView(visitor_id="v1", session_id="s1", channel="web", ts=100.0, event_id="e1"),
            PageView(visitor_id="v1", session_id="s1", channel="web", ts=110.0, event_id="e2"),
            PageView(visitor_id="v1", session_id="s2", channel="ios", ts=5000.0, event_id="e3"),
            Conversion(visitor_id="v1", goal="signup", value=49.0, ts=5001.0, event_id="e4"),
        ]
        assert await recorder.record(events) == 4
        assert await recorder.record(events) == 0  # the retried batch counts nothing
        profile = await store.load("v1")
        assert profile.visits == 2 and profile.page_views == 3 and profile.conversions == 1
        assert profile.first_seen == 100.0 and profile.last_seen == 5001.0
        assert profile.channels == ("ios", "web") and profile.goals == {"signup": 1}
        assert await redis.xlen("vary:events") == 4
        # Events without event_id are all counted; ts defaults to the time received.
        assert await recorder.record([PageView(visitor_id="v2")], received_at=42.0) == 1
        assert (await store.load("v2")).first_seen == 42.0
        await redis.aclose()

    _run(body())


def test_missing_profile_is_empty_and_bad_fields_are_ignored(sync_redis) -> None:  # noqa: ANN001
    sync_redis.hset(profile_key("v9"), mapping={"visits": "x", "a:exp": "2", "a:bad": "?", "unknown": "1"})

    async def body() -> None:
        redis = Redis.from_url(_url(sync_redis))
        store = RedisProfileStore(redis)
        assert (await store.load("nobody")).visits == 0
        profile = await store.load("v9")
        assert profile.visits == 0 and profile.assignments == {"exp": 2}
        await redis.aclose()

    _run(body())


def _url(client) -> str:  # noqa: ANN001
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}"


def test_exposure_writer_batches_and_flushes_everything_on_close(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        writer = ExposureWriter(redis, batch_size=100)
        writer.start()
        sent = [_exposure(i) for i in range(1050)]
        for start in range(0, len(sent), 50):
            writer.submit(sent[start:start + 50], [("v1", "exp", 0)])
            await asyncio.sleep(0)
        await writer.close()
        entries = await redis.xrange(EXPOSURE_STREAM)
        got = [EXPOSURE_DECODER.decode(fields[b"data"]) for _, fields in entries]
        assert [e.id for e in got] == [e.id for e in sent]  # every one, in order
        assert writer.written == 1050 and writer.dropped == 0
        assert await redis.hget(profile_key("v1"), "a:exp") == b"0"
        await redis.aclose()

    _run(body())


def test_full_queue_counts_drops_instead_of_blocking(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        writer = ExposureWriter(redis, queue_size=10)
        writer.submit([_exposure(i) for i in range(15)])  # not started: nothing drains
        assert writer.pending == 10 and writer.dropped == 5
        await writer.close()
        assert await redis.xlen(EXPOSURE_STREAM) == 10
        await redis.aclose()

    _run(body())


def test_survey_scores_are_checked_per_metric() -> None:
    check_event(Survey(visitor_id="v", metric="nps", score=10))
    with pytest.raises(EventProblem, match="nps is scored 0-10"):
        check_event(Survey(visitor_id="v", metric="nps", score=11))
    with pytest.raises(EventProblem, match="csat"):
        check_event(Survey(visitor_id="v", metric="csat", score=0))
    with pytest.raises(EventProblem, match="answers"):
        check_event(Survey(visitor_id="v", metric="sus"))


def test_exposure_records_decode_with_added_fields_defaulted() -> None:
    old = b'{"id":"x","ts":1.0,"visitor_id":"v","session_id":null,"channel":"web","entry_id":"e",' \
          b'"variant_entry_id":"e","experience":null,"variant":0,"is_control":true,"holdout":false,"propensity":1.0}'
    exposure = EXPOSURE_DECODER.decode(old)
    assert exposure.segments == {} and exposure.model_version is None
    assert msgspec.json.decode(msgspec.json.encode(exposure), type=Exposure) == exposure
