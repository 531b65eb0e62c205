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


async def _evalsha_calls(admin: Redis) -> int:
    return int((await admin.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0))


def test_a_loop_turns_reads_go_as_one_script_call_and_match_the_pipeline(redis_url: str) -> None:
    """Issue 22: on one server the coalesced reads are one EVALSHA (one reply for redis-py to parse),
    and each visitor gets exactly what the pipeline of HGETALL (the coalesce=False path) gives."""
    from personalization.store.keys import history_key, traits_key

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        admin = Redis.from_url(redis_url)
        try:
            for i in range(40):
                await admin.hset(profile_key(f"v{i}"), mapping={"visits": i, "ch:web": 1, "f:hero": f"1 {i} 1 1 {i}"})
                await admin.hset(history_key(f"v{i}"), mapping={"p:1": f"/page/{i}"})
                await admin.hset(traits_key(f"v{i}"), mapping={"plan": '"pro"', "n": str(i)})
            await admin.config_resetstat()
            store = RedisProfileStore(redis)
            coalesced = await asyncio.gather(*(store.load(f"v{i}") for i in range(40)), store.load("nobody"))
            assert await _evalsha_calls(admin) == 1
            piped = RedisProfileStore(redis, coalesce=False)
            assert coalesced == [await piped.load(f"v{i}") for i in range(40)] + [await piped.load("nobody")]
            assert coalesced[7].traits == {"plan": "pro", "n": 7} and coalesced[7].history == {"p:1": "/page/7"}
        finally:
            await redis.aclose()
            await admin.aclose()

    asyncio.run(body())


def test_reads_reload_the_script_after_a_flush_and_follow_the_client_decoding(redis_url: str) -> None:
    """A server that lost its scripts (restart, failover, SCRIPT FLUSH) answers NOSCRIPT: the store
    loads the read script and sends the batch again; a decode_responses client reads the same profile."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        text = Redis.from_url(redis_url, decode_responses=True)
        try:
            await redis.hset(profile_key("v1"), mapping={"visits": 3, "g:buy": 2, "a:hero": 1})
            store = RedisProfileStore(redis)
            assert (await store.load("v1")).visits == 3
            await redis.script_flush()
            profiles = await asyncio.gather(store.load("v1"), store.load("v2"))
            assert (profiles[0].visits, profiles[0].goals, profiles[1].visits) == (3, {"buy": 2}, 0)
            assert not store.breaker_open
            assert await RedisProfileStore(text).load("v1") == profiles[0]
        finally:
            await redis.aclose()
            await text.aclose()

    asyncio.run(body())


def test_a_batch_over_max_batch_is_split_into_script_calls(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        admin = Redis.from_url(redis_url)
        try:
            await admin.hset(profile_key("v600"), mapping={"visits": 6})
            await admin.config_resetstat()
            store = RedisProfileStore(redis)
            profiles = await asyncio.gather(*(store.load(f"v{i}") for i in range(601)))
            assert await _evalsha_calls(admin) == 3  # 256 + 256 + 89
            assert profiles[600].visits == 6 and all(p.visits == 0 for p in profiles[:600])
        finally:
            await redis.aclose()
            await admin.aclose()

    asyncio.run(body())


def test_a_wrong_type_key_fails_the_batch_like_the_pipeline_did(redis_url: str) -> None:
    """One visitor's key of the wrong type fails every read of its batch (the pipeline raised its
    first error too), as a ResponseError that leaves the breaker closed."""
    from redis.exceptions import ResponseError

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await redis.set(profile_key("broken"), "x")
            store = RedisProfileStore(redis)
            results = await asyncio.gather(store.load("broken"), store.load("fine"), return_exceptions=True)
            assert all(isinstance(r, ResponseError) and "WRONGTYPE" in str(r) for r in results)
            assert not store.breaker_open
            assert (await store.load("fine")).visits == 0
        finally:
            await redis.aclose()

    asyncio.run(body())


def test_the_script_is_loaded_in_the_round_trip_of_the_first_batch_only(redis_url: str) -> None:
    """A store's first batch carries SCRIPT LOAD in its own pipeline (no extra round trip on a fresh
    or flushed server); later batches send EVALSHA alone; a NOSCRIPT (flushed since) costs one more."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        admin = Redis.from_url(redis_url)
        try:
            await admin.script_flush()
            await admin.config_resetstat()
            pipelines = 0
            original = redis.pipeline

            def counting(*args: object, **kwargs: object) -> object:
                nonlocal pipelines
                pipelines += 1
                return original(*args, **kwargs)

            redis.pipeline = counting  # type: ignore[method-assign]
            store = RedisProfileStore(redis)
            for expected_pipelines, expected_loads in ((1, 1), (2, 1), (3, 1)):
                await asyncio.gather(store.load("v1"), store.load("v2"))
                stats = await admin.info("commandstats")
                assert (pipelines, stats["cmdstat_script|load"]["calls"]) == (expected_pipelines, expected_loads)
            await admin.script_flush()
            assert (await store.load("v1")).visits == 0
            stats = await admin.info("commandstats")
            assert (pipelines, stats["cmdstat_script|load"]["calls"]) == (5, 2)  # NOSCRIPT, then load + call
        finally:
            await redis.aclose()
            await admin.aclose()

    asyncio.run(body())


def test_load_within_fails_a_read_past_its_deadline_and_the_batch_still_completes(redis_url: str) -> None:
    """One timer per batch (issue 22): with the server paused, reads fail at their deadline, not at
    the socket timeout; once it answers again the same store (same connection) reads normally."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        admin = Redis.from_url(redis_url)
        try:
            await admin.hset(profile_key("kept"), mapping={"visits": 3})
            store = RedisProfileStore(redis, stall_s=10.0)
            assert (await store.load_within("kept", 1.0)).visits == 3
            await admin.execute_command("CLIENT", "PAUSE", "300", "ALL")
            loop = asyncio.get_running_loop()
            started = loop.time()
            results = await asyncio.gather(
                *(store.load_within(f"v{i}", 0.05) for i in range(5)), return_exceptions=True
            )
            waited = loop.time() - started
            assert all(isinstance(r, TimeoutError) for r in results), results
            assert 0.05 <= waited < 0.25  # the deadline, not the pause (0.3 s) nor the socket timeout
            await asyncio.sleep(0.4)  # the pause ends; the batch on the wire completes
            assert (await store.load_within("kept", 1.0)).visits == 3
        finally:
            await redis.aclose()
            await admin.aclose()

    asyncio.run(body())


def test_load_within_reads_what_load_reads(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await redis.hset(profile_key("both"), mapping={"visits": 4, "a:hero": 2})
            for coalesce in (True, False):
                store = RedisProfileStore(redis, coalesce=coalesce)
                within, plain = await asyncio.gather(store.load_within("both", 1.0), store.load("both"))
                assert within == plain and within.visits == 4 and within.assignments == {"hero": 2}
        finally:
            await redis.aclose()

    asyncio.run(body())
