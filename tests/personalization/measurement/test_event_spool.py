"""Events survive Redis being unreachable: spooled locally, replayed in order, counted once.

Against the real Valkey: the outage is a SIGKILLed server started again on the same port and data,
and the slot rule is checked on the real 3-node cluster (which refuses a cross-slot script call).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from api.embedded.cluster import EmbeddedCluster
from api.embedded.valkey import EmbeddedRedis
from api.redis_client import async_redis
from api.settings import Settings
from personalization.measurement.events import (
    EVENT_DECODER,
    EVENT_ENCODER,
    EVENT_STREAM,
    Conversion,
    Event,
    PageView,
)
from personalization.measurement.recorder import (
    SERVER_EVENT_ID_PREFIX,
    EventRecorder,
    EventSpoolFull,
    EventsRecorded,
    stamp,
)
from personalization.store.keys import profile_key, stream_name
from personalization.store.partitions import all_streams, partition_of
from personalization.store.spool import Spool, orphaned_spools
from tests.e2e.servers import free_port


async def _stream_events(client: Redis, stream: str = EVENT_STREAM) -> list[Event]:
    return [EVENT_DECODER.decode(fields[b"data"]) for _, fields in await client.xrange(stream)]


def _spooled(spool: Spool) -> list[Event]:
    return [EVENT_DECODER.decode(raw) for batch in spool.batches() for raw in batch.entries]


def test_spool_reads_from_an_offset_and_clears_only_if_nothing_came_in(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "events.spool", kind="events")
    spool.append("b1", [b"1", b"2"])
    spool.append("b2", [b"3"])
    read = list(spool.read_from(0))
    assert [(b.batch_id, len(b.entries)) for b, _ in read] == [("b1", 2), ("b2", 1)]
    done = read[-1][1]
    assert done == spool.size
    spool.append("b3", [b"4"])  # arrives while the first two are being replayed
    assert not spool.clear_if_size(done) and spool.size > done
    rest = list(spool.read_from(done))
    assert [b.batch_id for b, _ in rest] == ["b3"]
    assert spool.clear_if_size(rest[-1][1]) and spool.size == 0
    spool.close()
    assert not (tmp_path / "events.spool").exists()  # an empty spool leaves no file


def test_events_spooled_while_redis_is_down_are_replayed_in_order_once(tmp_path: Path) -> None:
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis", port=port)
    server.start()

    async def body() -> None:
        client = Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0)
        spool = Spool(tmp_path / "spool" / "events.spool", kind="events")
        recorder = EventRecorder(client, spool=spool)
        before = [PageView(visitor_id="v1", session_id="s1", ts=100.0, event_id="a")]
        assert await recorder.record_or_spool(before) == EventsRecorded(accepted=1)

        server.kill()
        during = [
            PageView(visitor_id="v1", session_id="s1"),  # no id, no ts: both assigned before spooling
            Conversion(visitor_id="v1", goal="signup", ts=200.0, event_id="c1"),
            PageView(visitor_id="v1", session_id="s1", ts=100.0, event_id="a"),  # a retry of one Redis has
        ]
        assert await recorder.record_or_spool(during, received_at=150.0) == EventsRecorded(spooled=3)
        kept = _spooled(spool)
        assert kept[0].event_id is not None and kept[0].event_id.startswith(SERVER_EVENT_ID_PREFIX)
        assert kept[0].ts == 150.0 and [e.event_id for e in kept[1:]] == ["c1", "a"]
        assert recorder.waiting == 3 and recorder.spool_bytes == spool.size > 0

        with pytest.raises(redis.exceptions.ConnectionError):
            await recorder.replay()  # still down: the spool is kept whole
        assert len(_spooled(spool)) == 3

        server.start()
        # Redis is back, but earlier events still wait in the spool: new ones queue behind them.
        later = [PageView(visitor_id="v1", session_id="s2", ts=300.0, event_id="late")]
        assert await recorder.record_or_spool(later) == EventsRecorded(spooled=1)
        assert await recorder.replay() == 4
        assert spool.size == 0 and recorder.waiting == 0 and recorder.replayed == 4 and recorder.spooled == 4
        assert await recorder.replay() == 0

        stored = await _stream_events(client)
        assert [e.event_id for e in stored] == ["a", kept[0].event_id, "c1", "late"]  # order kept, "a" once
        profile = await client.hgetall(profile_key("v1"))
        assert profile[b"page_views"] == b"3" and profile[b"conversions"] == b"1" and profile[b"visits"] == b"2"
        # Back to normal: written straight to Redis again.
        assert await recorder.record_or_spool([PageView(visitor_id="v1")]) == EventsRecorded(accepted=1)
        recorder.close()
        await client.aclose()

    try:
        asyncio.run(body())
    finally:
        server.stop()


def test_a_write_whose_reply_was_lost_is_not_counted_again(redis_url: str, tmp_path: Path) -> None:
    """The write reached Redis but its answer did not: the batch was spooled anyway. Replaying it
    must count nothing twice — also when only the profile half had run (its stream half is missing)."""

    async def body() -> None:
        client = Redis.from_url(redis_url)
        spool = Spool(tmp_path / "events.spool", kind="events")
        recorder = EventRecorder(client, spool=spool)
        stamped = [stamp(PageView(visitor_id="v7"), 10.0), stamp(Conversion(visitor_id="v7", goal="g"), 11.0)]
        assert await recorder.record(stamped) == 2
        spool.append("lost-reply", [EVENT_ENCODER.encode(e) for e in stamped])
        assert await recorder.replay() == 2
        assert await client.xlen(EVENT_STREAM) == 2
        assert await client.hget(profile_key("v7"), "page_views") == b"1"

        # A crash between the halves: the profile half ran, the stream half did not.
        await client.delete(EVENT_STREAM, *[k async for k in client.scan_iter(match="{vary:events}:e:*")])
        spool.append("half-done", [EVENT_ENCODER.encode(e) for e in stamped])
        assert await recorder.replay() == 2
        assert [e.event_id for e in await _stream_events(client)] == [e.event_id for e in stamped]
        profile = await client.hgetall(profile_key("v7"))
        assert profile[b"page_views"] == b"1" and profile[b"conversions"] == b"1"
        recorder.close()
        await client.aclose()

    asyncio.run(body())


def test_a_full_events_spool_refuses_the_batch_and_keeps_what_it_had(tmp_path: Path) -> None:
    async def body() -> None:
        nowhere = Redis(port=free_port(), socket_timeout=0.5, socket_connect_timeout=0.5)  # nothing listens
        spool = Spool(tmp_path / "events.spool", max_bytes=400, kind="events")
        recorder = EventRecorder(nowhere, spool=spool)
        assert await recorder.record_or_spool([PageView(visitor_id="v1", event_id="one")]) == EventsRecorded(spooled=1)
        too_many = [PageView(visitor_id="v1", event_id=f"more-{i}") for i in range(5)]
        with pytest.raises(EventSpoolFull):
            await recorder.record_or_spool(too_many)
        assert [e.event_id for e in _spooled(spool)] == ["one"] and spool.rejected == 5
        assert recorder.spooled == 1
        # Without a spool the error is Redis's own (the API answers 503, as before spooling existed).
        with pytest.raises(redis.exceptions.ConnectionError):
            await EventRecorder(nowhere).record_or_spool([PageView(visitor_id="v1")])
        recorder.close()
        await nowhere.aclose()

    asyncio.run(body())


def test_replay_catches_up_while_events_keep_arriving(redis_url: str, tmp_path: Path) -> None:
    async def body() -> None:
        client = Redis.from_url(redis_url)
        spool = Spool(tmp_path / "events.spool", kind="events")
        recorder = EventRecorder(client, spool=spool)
        sent: list[str] = []
        for i in range(100):  # spooled during an outage
            batch = [stamp(PageView(visitor_id=f"v{i % 3}", event_id=f"old-{i}-{j}"), float(i)) for j in range(3)]
            spool.append(f"b{i}", [EVENT_ENCODER.encode(e) for e in batch])
            sent += [e.event_id for e in batch if e.event_id]

        async def arrivals() -> None:
            for i in range(60):  # new events while the replay runs: they go behind the spool
                await recorder.record_or_spool([PageView(visitor_id=f"v{i % 3}", event_id=f"new-{i}")])
                sent.append(f"new-{i}")
                await asyncio.sleep(0)

        replayed, _ = await asyncio.gather(recorder.replay(), arrivals())
        assert replayed > 300  # it went on past what was there when it started
        await recorder.replay()  # whatever arrived after it caught up (normally the loop's next round)
        assert spool.size == 0
        stored = [e.event_id for e in await _stream_events(client)]
        assert stored == sent  # every event once, in the order received
        recorder.close()
        await client.aclose()

    asyncio.run(body())


def test_a_stopped_workers_spool_with_a_torn_tail_is_replayed_and_removed(redis_url: str, tmp_path: Path) -> None:
    left = Spool(tmp_path / "events" / "events-1.spool", kind="events")
    left.append("b1", [EVENT_ENCODER.encode(stamp(PageView(visitor_id="gone", event_id="x1"), 1.0))])
    left.close()
    with open(tmp_path / "events" / "events-1.spool", "ab") as handle:
        handle.write(b'b2 [{"type":"page_view"')  # killed mid-append: never acknowledged

    async def body() -> None:
        client = Redis.from_url(redis_url)
        recorder = EventRecorder(client)
        for orphan in orphaned_spools(tmp_path / "events"):
            assert await recorder.replay(orphan) == 1
            orphan.close()
        assert [e.event_id for e in await _stream_events(client)] == ["x1"]
        assert list((tmp_path / "events").iterdir()) == []
        await client.aclose()

    asyncio.run(body())


def test_cluster_partitioned_streams_keep_each_script_call_in_one_slot(valkey_cluster: EmbeddedCluster) -> None:
    async def body() -> None:
        client = async_redis(Settings(redis_url=valkey_cluster.url))
        assert isinstance(client, RedisCluster)
        try:
            await client.delete(*all_streams(EVENT_STREAM, 4))
            recorder = EventRecorder(client, partitions=4)
            events = [
                PageView(visitor_id=f"cv{i % 9}", session_id=f"s{i % 9}", ts=float(i), event_id=f"ce{i}")
                for i in range(60)
            ]
            assert await recorder.record(events) == 60
            assert await recorder.record(events) == 0  # a retried batch counts nothing
            assert await recorder.record([PageView(visitor_id="cv0")]) == 1  # server-assigned id
            for p in range(4):
                stream = stream_name(EVENT_STREAM, p, 4)
                stored = await _stream_events(client, stream)
                assert all(partition_of(e.visitor_id, 4) == p for e in stored)
                mine = [e.event_id for e in events if partition_of(e.visitor_id, 4) == p]
                assert [e.event_id for e in stored if not (e.event_id or "").startswith(SERVER_EVENT_ID_PREFIX)] == mine
            assert await client.hget(profile_key("cv3"), "page_views") == b"7"  # cv3: i = 3, 12, …, 57
        finally:
            await client.aclose()

    asyncio.run(body())


def test_events_a_restarted_redis_lost_are_written_again_once(tmp_path: Path) -> None:
    """A Valkey without persistence, SIGKILLed and started again, empty: what a server running
    ``appendfsync everysec`` does to writes it held back while an fsync ran
    (personalization/store/recent_batches.py). The recorder writes its held events again, counters
    included, and a second look at the same server writes nothing."""
    server = EmbeddedRedis(tmp_path / "vk", port=free_port(), appendonly=False)
    server.start()

    async def body() -> None:
        client = Redis.from_url(server.url)
        recorder = EventRecorder(client, hold_s=30)
        sent = [PageView(visitor_id="v1", session_id="s1", event_id="pv-1"),
                Conversion(visitor_id="v1", goal="signup", event_id="cv-1")]
        assert (await recorder.record_or_spool(sent)).accepted == 2
        assert await recorder.resend_if_restarted() == 0  # the first look
        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.start)
        assert await _stream_events(client) == []  # gone with the server
        assert await recorder.resend_if_restarted() == 2
        assert [e.event_id for e in await _stream_events(client)] == ["pv-1", "cv-1"]
        profile = await client.hgetall(profile_key("v1"))
        assert profile[b"page_views"] == b"1" and profile[b"conversions"] == b"1"
        assert await recorder.resend_if_restarted() == 0 and len(await _stream_events(client)) == 2
        assert recorder.resent == 2
        await client.aclose()

    try:
        asyncio.run(body())
    finally:
        server.stop()
