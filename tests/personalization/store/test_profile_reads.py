"""Coalesced profile reads (real Valkey): concurrent requests share one pipeline and each gets its
own visitor's profile; a reader that gives up does not disturb the others; Redis down is an error."""

from __future__ import annotations

import asyncio
import socket

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from personalization.store.keys import profile_key
from personalization.store.profiles import RedisProfileStore


def test_concurrent_reads_share_one_connection_and_get_their_own_profile(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url, client_name="vary-coalesce-test")
        setup = Redis.from_url(redis_url)
        try:
            for i in range(100):
                await setup.hset(profile_key(f"v{i}"), mapping={"visits": i, "a:hero": i % 3})
            store = RedisProfileStore(redis)
            profiles = await asyncio.gather(*(store.load(f"v{i}") for i in range(100)), store.load("nobody"))
            assert [p.visits for p in profiles[:100]] == list(range(100))
            assert [p.assignments for p in profiles[:100]] == [{"hero": i % 3} for i in range(100)]
            assert profiles[100].visits == 0 and profiles[100].assignments == {}
            clients = [c for c in await setup.client_list() if c.get("name") == "vary-coalesce-test"]
            assert len(clients) == 1  # 101 reads, one connection: they went as one pipeline
        finally:
            await redis.aclose()
            await setup.aclose()

    asyncio.run(body())


def test_a_reader_past_its_deadline_leaves_the_others_their_replies(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await redis.hset(profile_key("kept"), mapping={"visits": 7})
            store = RedisProfileStore(redis)

            async def impatient() -> None:
                async with asyncio.timeout(0):  # gives up before the reply can arrive
                    await store.load("impatient")

            results = await asyncio.gather(impatient(), store.load("kept"), return_exceptions=True)
            assert isinstance(results[0], TimeoutError)
            assert results[1].visits == 7  # type: ignore[union-attr]
            assert (await store.load("kept")).visits == 7  # the connection is still good
        finally:
            await redis.aclose()

    asyncio.run(body())


def test_redis_down_raises_for_every_waiting_reader() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def body() -> list[object]:
        redis = Redis(port=port, socket_connect_timeout=0.2)
        try:
            store = RedisProfileStore(redis)
            return await asyncio.gather(*(store.load(f"v{i}") for i in range(3)), return_exceptions=True)
        finally:
            await redis.aclose()

    results = asyncio.run(body())
    assert len(results) == 3 and all(isinstance(r, RedisConnectionError) for r in results)


@pytest.mark.parametrize("coalesce", [True, False])
def test_both_read_paths_agree(redis_url: str, coalesce: bool) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await redis.hset(profile_key("same"), mapping={"visits": 2, "page_views": 5, "ch:web": 1, "g:buy": 1})
            profile = await RedisProfileStore(redis, coalesce=coalesce).load("same")
            assert (profile.visits, profile.page_views, profile.channels, profile.goals) == (2, 5, ("web",), {"buy": 1})
        finally:
            await redis.aclose()

    asyncio.run(body())


def test_a_stalled_redis_trips_the_breaker_instead_of_opening_connections(redis_url: str) -> None:
    """CLIENT PAUSE is a real stall: the server accepts and reads commands but answers none."""
    from personalization.store.profiles import RedisStalled

    async def body() -> None:
        redis = Redis.from_url(redis_url, client_name="vary-stall-test", socket_timeout=5)
        admin = Redis.from_url(redis_url)
        try:
            await admin.hset(profile_key("v1"), mapping={"visits": 3})
            store = RedisProfileStore(redis, stall_s=0.2)
            await admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
            probe = asyncio.ensure_future(store.load("v1"))  # the read that finds Redis paused
            await asyncio.sleep(0.4)
            assert not probe.done()
            loop = asyncio.get_running_loop()
            started = loop.time()
            failures = 0
            for _ in range(50):
                with pytest.raises(RedisStalled):
                    await store.load("v1")
                failures += 1
            assert failures == 50 and loop.time() - started < 0.1  # failed at once, nothing sent
            assert store.stalled_reads == 50
            assert (await probe).visits == 3  # the probe is answered once the pause ends
            assert (await store.load("v1")).visits == 3  # and reads flow again
            clients = [c for c in await admin.client_list() if c.get("name") == "vary-stall-test"]
            assert len(clients) == 1  # the stall opened no second connection
        finally:
            await admin.execute_command("CLIENT", "UNPAUSE")
            await redis.aclose()
            await admin.aclose()

    asyncio.run(body())


def test_the_breaker_stays_open_after_a_timed_out_read_until_a_probe_gets_through(redis_url: str) -> None:
    """A read that times out on a paused Redis leaves the breaker open (it used to close, and every
    socket timeout reopened a window of requests each waiting its full profile timeout): reads then
    fail at once, one probe at a time goes out, and the first probe Redis answers closes it."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from personalization.store.profiles import RedisStalled

    async def body() -> None:
        redis = Redis.from_url(redis_url, socket_timeout=0.3)
        admin = Redis.from_url(redis_url)
        try:
            await admin.hset(profile_key("v2"), mapping={"visits": 4})
            store = RedisProfileStore(redis, stall_s=5.0)  # only the failure can open it here
            await admin.execute_command("CLIENT", "PAUSE", "1000", "ALL")
            with pytest.raises(RedisTimeoutError):
                await store.load("v2")  # the socket timeout ends it
            assert store.breaker_open
            refused = [asyncio.ensure_future(store.load("v2")) for _ in range(20)]
            await asyncio.sleep(0)  # one loop turn: each was refused without waiting for Redis
            assert all(task.done() and isinstance(task.exception(), RedisStalled) for task in refused)
            assert store.probes == 1  # twenty refusals, one probe on the wire
            answered = None
            for _ in range(60):  # the pause ends after 1 s; probes time out until then
                await asyncio.sleep(0.05)
                try:
                    answered = await store.load("v2")
                    break
                except RedisStalled:
                    continue
            assert answered is not None and answered.visits == 4
            assert not store.breaker_open and 2 <= store.probes
        finally:
            await redis.aclose()
            await admin.aclose()

    asyncio.run(body())
