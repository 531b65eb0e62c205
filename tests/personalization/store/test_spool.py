"""Exposures survive a Redis outage: spooled locally, replayed in order, never twice.

The outage is real: the Valkey server is SIGKILLed and started again on the same port and data.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from redis.asyncio import Redis

from api.embedded.valkey import EmbeddedRedis
from personalization.store.exposures import EXPOSURE_STREAM, ExposureWriter
from personalization.store.keys import BATCH_MARKER
from personalization.types import new_exposure_id
from personalization.store.spool import Spool
from personalization.types import EXPOSURE_DECODER, Exposure
from tests.e2e.servers import free_port


def _exposure(i: int) -> Exposure:
    return Exposure(
        id=new_exposure_id(), ts=float(i), visitor_id=f"v{i % 7}", session_id=None, channel="web",
        entry_id="hero", variant_entry_id="hero", experience="exp", variant=i % 2, is_control=i % 2 == 0,
        holdout=False, propensity=0.5,
    )


def test_size_is_the_files_length_through_every_change(tmp_path: Path) -> None:
    """The spool keeps its size itself (issue 22: no ``tell()`` per append); it must always be the
    file's length, and the file hold exactly the lines appended."""
    path = tmp_path / "sized.spool"
    spool = Spool(path)

    def check(expected: bytes) -> None:
        assert path.read_bytes() == expected and spool.size == len(expected) == len(spool)

    spool.append("b1", [b'{"v":"a"}', b'{"v":"b"}'])
    spool.append("b2", [b'{"v":"c"}'])
    check(b'b1 [{"v":"a"},{"v":"b"}]\nb2 [{"v":"c"}]\n')
    assert spool.drop(lambda raw: bytes(raw) == b'{"v":"b"}') == 1
    check(b'b1 [{"v":"a"}]\nb2 [{"v":"c"}]\n')
    spool.append("b3", [b'{"v":"d"}'])
    check(b'b1 [{"v":"a"}]\nb2 [{"v":"c"}]\nb3 [{"v":"d"}]\n')
    assert not spool.clear_if_size(3) and spool.clear_if_size(spool.size)
    check(b"")
    spool.append("b4", [b"{}"])
    spool.empty()
    check(b"")
    spool.append("b5", [b"{}"])
    spool.close()
    reopened = Spool(path)
    assert reopened.size == len(b"b5 [{}]\n") and reopened.append("b6", [b"{}"])
    assert path.read_bytes() == b"b5 [{}]\nb6 [{}]\n" and reopened.size == path.stat().st_size
    reopened.clear()
    assert reopened.size == 0 == path.stat().st_size
    reopened.close()


def test_spool_round_trip_and_torn_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.log")
    assert spool.append("b1", [b'{"x":1}', b'{"x":2}'])
    assert spool.append("b2", [b'{"x":3}'])
    with open(tmp_path / "spool.log", "ab") as handle:
        handle.write(b'b3 [{"x":4')  # a crash mid-write
    assert [(b.batch_id, len(b.entries)) for b in spool.batches()] == [("b1", 2), ("b2", 1)]
    spool.clear()
    assert spool.size == 0 and list(spool.batches()) == []
    small = Spool(tmp_path / "small.log", max_bytes=40)
    assert small.append("b", [b"x" * 10]) and not small.append("c", [b"y" * 30])
    assert small.rejected == 1
    spool.close()
    small.close()


def test_redis_killed_mid_stream_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis-data", port=port)
    server.start()

    async def body() -> None:
        redis = Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0)
        writer = ExposureWriter(redis, batch_size=50, spool=Spool(tmp_path / "spool.log"))
        writer.start()
        sent: list[Exposure] = []

        async def send(n: int) -> None:
            for _ in range(n):
                batch = [_exposure(len(sent) + i) for i in range(10)]
                sent.extend(batch)
                writer.submit(batch)
                await asyncio.sleep(0.001)

        await send(30)
        await writer.flush()
        server.kill()  # Redis dies
        await send(30)
        await writer.flush()
        assert writer.spooled > 0 and not writer.healthy
        server.start()  # Redis returns (same port, same append-only file)
        await send(30)
        deadline = asyncio.get_running_loop().time() + 10
        while writer.spool_bytes and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        await writer.close()
        entries = await redis.xrange(EXPOSURE_STREAM)
        got = [EXPOSURE_DECODER.decode(f[b"data"]).id for _, f in entries]
        assert sorted(got) == sorted(e.id for e in sent)  # every exposure
        assert len(got) == len(set(got))  # exactly once
        assert writer.dropped == 0 and writer.replayed == writer.spooled
        await redis.aclose()

    try:
        asyncio.run(body())
    finally:
        server.stop()


def test_replay_skips_a_batch_that_did_reach_redis(redis_url: str, tmp_path: Path) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        spool = Spool(tmp_path / "spool.log")
        writer = ExposureWriter(redis, spool=spool)
        first, second = _exposure(1), _exposure(2)
        # batch "done" reached Redis but its reply was lost; batch "todo" did not
        await writer._send("done", [(first, None)])
        from personalization.types import EXPOSURE_ENCODER

        spool.append("done", [b'{"x":' + EXPOSURE_ENCODER.encode(first) + b"}"])
        spool.append("todo", [b'{"x":' + EXPOSURE_ENCODER.encode(second) + b"}"])
        assert await writer.replay() == 1
        ids = [EXPOSURE_DECODER.decode(f[b"data"]).id for _, f in await redis.xrange(EXPOSURE_STREAM)]
        assert ids == [first.id, second.id]
        assert await redis.exists(BATCH_MARKER + "todo") and spool.size == 0
        await writer.close()
        await redis.aclose()

    asyncio.run(body())


def test_a_batch_spooled_during_the_replays_last_write_is_replayed_not_cleared(redis_url: str, tmp_path: Path) -> None:
    """The writer spools a batch while a replay is awaiting Redis for the last batch it read (Redis
    was paused: a write times out just as an earlier spooled batch is being replayed). That batch
    must be replayed too, not cleared with the rest. The interleaving is forced by running the
    writer's spill inside the replay's write (an exact race, not a timed one)."""
    from personalization.types import EXPOSURE_ENCODER

    async def body() -> tuple[list[str], list[str], int]:
        redis = Redis.from_url(redis_url)
        spool = Spool(tmp_path / "spool.log")
        writer = ExposureWriter(redis, spool=spool)
        first, late = _exposure(1), _exposure(2)
        spool.append("early", [b'{"x":' + EXPOSURE_ENCODER.encode(first) + b"}"])
        send = writer._send

        async def send_while_a_batch_is_spooled(batch_id: str, batch: list) -> int:  # noqa: ANN401
            written = await send(batch_id, batch)
            if batch_id == "early":  # the writer's own batch timed out meanwhile and was spooled
                writer._spill([(late, None)], reason="TimeoutError", batch_id="late")
            return written

        writer._send = send_while_a_batch_is_spooled  # type: ignore[method-assign]
        replayed = await writer.replay()
        ids = [EXPOSURE_DECODER.decode(f[b"data"]).id for _, f in await redis.xrange(EXPOSURE_STREAM)]
        left = spool.size
        await writer.close()
        await redis.aclose()
        return ids, [first.id, late.id], replayed + left

    ids, expected, replayed_and_left = asyncio.run(body())
    assert ids == expected  # both in Redis, in order
    assert replayed_and_left == 2  # two replayed, nothing left in the spool
