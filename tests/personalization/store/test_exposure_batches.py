"""The exposure writer's one-script-per-stream batches: partitioned streams, cluster slots, replay.

Against the real Valkey (and the real 3-node cluster for the slot rule): every exposure lands in its
visitor's partition in order, each stream's batch marker shares that stream's slot, a batch replayed
after it reached Redis writes nothing twice, and a server that lost its script cache is reloaded.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from api.embedded.cluster import EmbeddedCluster
from api.redis_client import async_redis
from api.settings import Settings
from personalization.store.exposures import ExposureWriter
from personalization.store.keys import batch_marker
from personalization.types import new_exposure_id
from personalization.store.partitions import all_streams, stream_for
from personalization.store.keys import EXPOSURES
from personalization.store.keys import profile_key
from personalization.store.spool import Spool
from personalization.types import EXPOSURE_DECODER, EXPOSURE_ENCODER, Exposure


def _exposure(i: int) -> Exposure:
    return Exposure(
        id=new_exposure_id(), ts=float(i), visitor_id=f"visitor-{i % 11}", session_id=None, channel="web",
        entry_id="hero", variant_entry_id="hero", experience="exp", variant=i % 2, is_control=i % 2 == 0,
        holdout=False, propensity=0.5,
    )


async def _streams(redis: Redis, partitions: int) -> dict[str, list[Exposure]]:
    out = {}
    for stream in all_streams(EXPOSURES, partitions):
        out[stream] = [EXPOSURE_DECODER.decode(f[b"data"]) for _, f in await redis.xrange(stream)]
    return out


def _check_partitioned(sent: list[Exposure], got: dict[str, list[Exposure]], partitions: int) -> None:
    for stream, exposures in got.items():
        expected = [x.id for x in sent if stream_for(EXPOSURES, x.visitor_id, partitions) == stream]
        assert [x.id for x in exposures] == expected, stream  # every one, in its visitor's partition, in order
    assert sum(len(v) for v in got.values()) == len(sent)
    assert sum(1 for v in got.values() if v) > 1  # the visitors really spread over partitions


def test_partitioned_batches_go_to_each_visitors_stream_in_order(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        writer = ExposureWriter(redis, batch_size=40, partitions=4)
        writer.start()
        sent = [_exposure(i) for i in range(300)]
        for start in range(0, len(sent), 3):
            chunk = sent[start : start + 3]
            writer.submit(chunk, [(x.visitor_id, f"exp-{start}", x.variant) for x in chunk[:1]])
            await asyncio.sleep(0)
        await writer.close()
        _check_partitioned(sent, await _streams(redis, 4), 4)
        assert writer.written == 300 and writer.dropped == writer.spooled == 0
        assert await redis.hget(profile_key(sent[0].visitor_id), "a:exp-0") == str(sent[0].variant).encode()
        markers = [k.decode() async for k in redis.scan_iter("*:batch:*")]
        # each marker carries its stream's slot tag: "{2}:batch:<id>" beside "vary:exposures:{2}"
        assert markers and all(re.fullmatch(r"\{[0-3]\}:batch:[0-9a-f]+", m) for m in markers)
        await redis.aclose()

    asyncio.run(body())


def test_replay_after_a_lost_reply_writes_each_partition_once(redis_url: str, tmp_path: Path) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        spool = Spool(tmp_path / "spool.log")
        writer = ExposureWriter(redis, spool=spool, partitions=3)
        batch = [_exposure(i) for i in range(12)]
        items = [(x, None) for x in batch]
        # the batch reached Redis for one partition only, then the connection died: it is spooled whole
        first = stream_for(EXPOSURES, batch[0].visitor_id, 3)
        assert await writer._send("b1", [(x, None) for x in batch if stream_for(EXPOSURES, x.visitor_id, 3) == first]) > 0
        spool.append("b1", [b'{"x":' + EXPOSURE_ENCODER.encode(x) + b"}" for x, _ in items])
        already = sum(1 for x in batch if stream_for(EXPOSURES, x.visitor_id, 3) == first)
        assert await writer.replay() == len(batch) - already
        _check_partitioned(batch, await _streams(redis, 3), 3)
        assert await redis.exists(batch_marker(first, "b1")) and spool.size == 0
        assert await writer.replay() == 0  # nothing left, nothing written twice
        await writer.close()
        await redis.aclose()

    asyncio.run(body())


def test_a_flushed_script_cache_is_reloaded(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        writer = ExposureWriter(redis)
        writer.start()
        writer.submit([_exposure(1)])
        await writer.flush()
        await redis.script_flush()  # what a restarted server looks like to the writer
        writer.submit([_exposure(2)], [("visitor-2", "exp", 1)])
        await writer.close()
        assert await redis.xlen(EXPOSURES) == 2 and writer.written == 2 and writer.failed_batches == 0
        assert await redis.hget(profile_key("visitor-2"), "a:exp") == b"1"
        await redis.aclose()

    asyncio.run(body())


def test_cluster_keeps_each_script_call_in_one_slot(valkey_cluster: EmbeddedCluster) -> None:
    async def body() -> None:
        redis = async_redis(Settings(redis_url=valkey_cluster.url))
        assert isinstance(redis, RedisCluster)
        try:
            await redis.delete(*all_streams(EXPOSURES, 6))
            writer = ExposureWriter(redis, batch_size=64, partitions=6)  # type: ignore[arg-type]
            writer.start()
            sent = [_exposure(i) for i in range(200)]
            for start in range(0, len(sent), 4):
                chunk = sent[start : start + 4]
                writer.submit(chunk, [(x.visitor_id, f"cx-{start}", 1) for x in chunk])
            await writer.close()
            assert writer.written == 200 and writer.failed_batches == 0 and writer.dropped == 0
            got = {}
            for stream in all_streams(EXPOSURES, 6):
                got[stream] = [EXPOSURE_DECODER.decode(f[b"data"]) for _, f in await redis.xrange(stream)]
            _check_partitioned(sent, got, 6)
            # the assignments (other slots than the streams) were written too
            assert await redis.hget(profile_key(sent[5].visitor_id), "a:cx-4") == b"1"
        finally:
            await redis.aclose()

    asyncio.run(body())


# Issue 22: submit encodes each exposure once and queues one entry per call. What reaches the journal,
# the spool and the batch script must be byte for byte what the writer sent before.


def _request(visitor: str = "visitor-1") -> tuple[list[Exposure], list[tuple[str, str, int]]]:
    """One decision's share: a capped exposure, an uncapped one, the global holdout's, two assignments."""
    base = {"ts": 1_796_387_179.74, "visitor_id": visitor, "session_id": None, "channel": "web", "entry_id": "hero",
            "variant_entry_id": "hero", "is_control": False, "holdout": False, "propensity": 0.5}
    exposures = [
        Exposure(id=new_exposure_id(), experience="exp", variant=1, **base),  # type: ignore[arg-type]
        Exposure(id=new_exposure_id(), experience=None, variant=0, **base),  # type: ignore[arg-type]
        Exposure(id=new_exposure_id(), experience="_global", variant=1, **base),  # type: ignore[arg-type]
    ]
    return exposures, [(visitor, "exp", 1), (visitor, "other@p2", 0)]


def _entries(exposures: list[Exposure], assignments: list[tuple[str, str, int]]) -> list[bytes]:
    """The journal/spool entries as the format defines them (``{"x": exposure}``, ``{"a": assignment}``)."""
    return [b'{"x":' + EXPOSURE_ENCODER.encode(x) + b"}" for x in exposures] + [
        b'{"a":' + EXPOSURE_ENCODER.encode(a) + b"}" for a in assignments
    ]


class _Recorder:
    """Stands in for the Redis round trip: records the script calls, assignments and counters."""

    def __init__(self, writer: ExposureWriter) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.loose: list[tuple[str, str, str | int]] = []
        self.counts: list[tuple[str, str, str | int]] = []

        async def call(calls: list[tuple[object, ...]], loose: list[tuple[str, str, str | int]]) -> list[int]:
            self.calls += calls
            self.loose += loose
            return [c[3 + c[0]] for c in calls]  # type: ignore[misc,operator]  # the script's n

        async def count(counts: list[tuple[str, str, str | int]]) -> None:
            self.counts += counts

        writer._call = call  # type: ignore[method-assign]
        writer._count = count  # type: ignore[method-assign]


def test_journal_entries_and_script_arguments_are_the_record_formats(tmp_path: Path) -> None:
    from personalization.decision.frequency import buckets
    from personalization.store.journal import Journal

    async def body() -> None:
        journal = Journal(tmp_path, "w")
        writer = ExposureWriter(None, journal=journal)  # type: ignore[arg-type]
        recorder = _Recorder(writer)
        exposures, assignments = _request()
        writer.submit(exposures, assignments)
        batch_id, batch = writer._take_oldest()
        assert journal._current is not None
        [record] = journal._current.payloads()  # the ring holds the spool line, without its newline
        assert record == batch_id.encode() + b" [" + b",".join(_entries(exposures, assignments)) + b"]"
        assert await writer._send(batch_id, batch) == 3
        day, week = buckets(exposures[0].ts)
        profile = profile_key("visitor-1")
        assert recorder.calls == [
            (5, EXPOSURES, batch_marker(EXPOSURES, batch_id), profile, profile, profile, 86_400, "", 3,
             *(EXPOSURE_ENCODER.encode(x) for x in exposures),
             "f:exp", f"{day} {week}", "a:exp", 1, "a:other@p2", 0)
        ]  # fmt: skip
        assert recorder.loose == recorder.counts == []
        journal.close()

    asyncio.run(body())


def test_on_a_cluster_assignments_and_counters_leave_the_script(tmp_path: Path) -> None:
    from personalization.decision.frequency import buckets

    async def body() -> None:
        writer = ExposureWriter(None, partitions=3)  # type: ignore[arg-type]
        writer._cluster = True
        recorder = _Recorder(writer)
        exposures, assignments = _request()
        writer.submit(exposures, assignments)
        batch_id, batch = writer._take_oldest()
        assert await writer._send(batch_id, batch) == 3
        stream = stream_for(EXPOSURES, "visitor-1", 3)
        day, week = buckets(exposures[0].ts)
        profile = profile_key("visitor-1")
        assert recorder.calls == [
            (2, stream, batch_marker(stream, batch_id), 86_400, "", 3, *(EXPOSURE_ENCODER.encode(x) for x in exposures))
        ]
        assert recorder.loose == [(profile, "a:exp", 1), (profile, "a:other@p2", 0)]
        assert recorder.counts == [(profile, "f:exp", f"{day} {week}")]
        # a batch of assignments alone writes no stream part on a cluster (no marker, no script call)
        writer.submit((), assignments)
        recorder.calls.clear()
        assert await writer._send(*writer._take_oldest()) == 0 and recorder.calls == []

    asyncio.run(body())


def test_submit_encodes_each_exposure_once_and_queues_one_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from personalization.store import exposures as module
    from personalization.store.journal import Journal

    encoded: list[object] = []

    class Counting:
        def encode(self, value: object) -> bytes:
            encoded.append(value)
            return EXPOSURE_ENCODER.encode(value)

    monkeypatch.setattr(module, "EXPOSURE_ENCODER", Counting())

    async def body() -> None:
        journal = Journal(tmp_path, "w")
        writer = ExposureWriter(None, journal=journal)  # type: ignore[arg-type]
        _Recorder(writer)
        exposures, assignments = _request()
        writer.submit(exposures, assignments)
        assert writer._queue.qsize() == 1 and writer.pending == 5
        await writer.flush()  # no writer task: written here
        assert writer.pending == 0 and writer.written == 3
        assert encoded == [*exposures, *assignments]  # the journal's and the stream's bytes are one encoding
        journal.close()

    asyncio.run(body())


def test_a_full_queue_spills_what_does_not_fit_and_counts_exposures_only(tmp_path: Path) -> None:
    async def body() -> None:
        spool = Spool(tmp_path / "spool.log")
        writer = ExposureWriter(None, queue_size=4, spool=spool)  # type: ignore[arg-type]
        exposures, assignments = _request()
        writer.submit(exposures, assignments)  # 5 items, room for 4: the last assignment is spooled
        assert writer.pending == 4 and writer.spooled == 0 and writer.dropped == 0
        extra, _ = _request("visitor-2")
        writer.submit(extra[:1])  # no room at all: spooled whole
        assert writer.pending == 4 and writer.spooled == 1
        spooled = list(spool.batches())
        expected = _entries(exposures, assignments)[4:], _entries(extra[:1], [])
        assert [[bytes(e) for e in b.entries] for b in spooled] == list(expected)
        spool.close()
        without = ExposureWriter(None, queue_size=2)  # type: ignore[arg-type]
        without.submit(exposures, assignments)  # no spool: the exposures left over are dropped and counted
        assert without.pending == 2 and without.dropped == 1

    asyncio.run(body())
