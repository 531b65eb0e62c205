"""The Redis client factory, and the parts of Vary that talk to Redis outside the streams, on a real
3-node Valkey cluster: content store, sync lock, rate limiter, model registry (with pub/sub hot
reload across nodes) and profiles."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from litestar.exceptions import HTTPException
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from api.embedded.cluster import EmbeddedCluster
from api.http.ratelimit import RateLimiter
from api.redis_client import (
    HiredisConnection,
    HiredisSSLConnection,
    HiredisUnixConnection,
    async_redis,
    cluster_seed,
    is_cluster,
    sync_redis,
)
from api.settings import Settings, SettingsError, load_settings
from content import ExportFileSource, demo_space_path
from content.coordinator import ContentCoordinator
from content.store import ContentStore
from personalization.models.files import read_model_files
from personalization.models.registry import SEGMENTS_SLOT, ModelRegistry
from personalization.store.keys import profile_key
from personalization.store.profiles import RedisProfileStore

SEEDS = [
    ("redis+cluster://10.0.0.1:7000", [("10.0.0.1", 7000)], False, None, None),
    ("redis+cluster://a:7000,b:7001, c:7002/", [("a", 7000), ("b", 7001), ("c", 7002)], False, None, None),
    ("rediss+cluster://vary:s%40cret@a:6380,b:6380/0", [("a", 6380), ("b", 6380)], True, "vary", "s@cret"),
    ("redis+cluster://:only-password@a", [("a", 6379)], False, None, "only-password"),
    ("redis+cluster://[::1]:7000,[fe80::1]", [("::1", 7000), ("fe80::1", 6379)], False, None, None),
    ("redis://seed:6379", [("seed", 6379)], False, None, None),
    ("rediss://seed:6380", [("seed", 6380)], True, None, None),
]


@pytest.mark.parametrize(("url", "nodes", "ssl", "username", "password"), SEEDS)
def test_cluster_urls_parse(url: str, nodes: list, ssl: bool, username: str | None, password: str | None) -> None:
    seed = cluster_seed(url)
    assert (seed.nodes, seed.ssl, seed.username, seed.password) == (nodes, ssl, username, password)


BAD = [
    ("redis+cluster://a:notaport", "'a:notaport' has no valid port"),
    ("redis+cluster://a:70000", "'a:70000' is not host:port"),
    ("redis+cluster://a:7000/2", "a cluster has only database 0"),
    ("redis+cluster://", "no cluster node given"),
    ("http://a:7000", "expected one of"),
    ("a:7000", "expected one of"),
]


@pytest.mark.parametrize(("url", "problem"), BAD)
def test_bad_cluster_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(SettingsError) as error:
        cluster_seed(url)
    assert "VARY_REDIS_URL=" in str(error.value) and problem in str(error.value)


def test_a_password_never_appears_in_an_error() -> None:
    with pytest.raises(SettingsError) as error:
        cluster_seed("redis+cluster://vary:hunter2@a:x")
    assert "hunter2" not in str(error.value) and "vary:***@" in str(error.value)


def test_cluster_is_chosen_by_scheme_or_switch() -> None:
    assert is_cluster(load_settings({"VARY_REDIS_URL": "redis+cluster://a:1,b:2"}))
    assert is_cluster(load_settings({"VARY_REDIS_URL": "redis://a:1", "VARY_REDIS_CLUSTER": "1"}))
    assert not is_cluster(load_settings({"VARY_REDIS_URL": "redis://a:1"}))
    assert not is_cluster(Settings())


def test_the_factory_builds_the_right_client() -> None:
    async def build() -> tuple[object, object]:
        single = async_redis(Settings(redis_url="redis://127.0.0.1:1/3"), socket_timeout=1.0)
        cluster = async_redis(Settings(redis_url="redis+cluster://127.0.0.1:1,127.0.0.1:2"))
        try:
            return single, cluster
        finally:
            await single.aclose()

    single, cluster = asyncio.run(build())
    assert type(single) is Redis and single.connection_pool.connection_kwargs["db"] == 3  # type: ignore[attr-defined]
    assert isinstance(cluster, RedisCluster)
    assert [(n.host, n.port) for n in cluster.nodes_manager.startup_nodes.values()] == [
        ("127.0.0.1", 1), ("127.0.0.1", 2)
    ]
    with pytest.raises(SettingsError, match="VARY_REDIS_URL is not set"):
        async_redis(Settings())


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [("redis", HiredisConnection), ("rediss", HiredisSSLConnection), ("unix", HiredisUnixConnection)],
)
def test_single_server_clients_pack_commands_in_c(scheme: str, expected: type) -> None:
    url = "unix:///tmp/vary-none.sock" if scheme == "unix" else f"{scheme}://127.0.0.1:1/0"

    async def build() -> type:
        client = async_redis(Settings(redis_url=url))
        try:
            return client.connection_pool.connection_class  # type: ignore[attr-defined,no-any-return]
        finally:
            await client.aclose()

    assert asyncio.run(build()) is expected


COMMANDS = [
    ("HGETALL", "vary:p:{visitor-1}"),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", "vary"),
    ("EVALSHA", "ab" * 20, 3, "k1", "k2", "k3", 604800, "", 2, b'{"id":"x"}', "ünïcode ✓", 0, -7, 2**70,
     0.1, 1e-7, 1 / 3, float("inf"), memoryview(b"view")),
    # Longer than one part (PACK_WIDTH): packed in pieces, the same bytes.
    ("EVALSHA", "cd" * 20, 300, *(f"vary:vh:{{v{i}}}:p" for i in range(300)), 86_400, "",
     *(b'{"x":%d}' % i * 40 for i in range(200)), *(f"f:exp{i}" for i in range(150)), *range(150)),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_the_c_packer_writes_the_bytes_redis_py_writes(command: tuple) -> None:
    from redis.asyncio.connection import Connection

    ours = b"".join(bytes(part) for part in HiredisConnection().pack_command(*command))
    theirs = b"".join(bytes(part) for part in Connection().pack_command(*command))
    assert ours == theirs


@pytest.mark.parametrize("bad", [None, True, bytearray(b"x")])
def test_arguments_the_c_packer_refuses_fail_as_redis_py_fails(bad: object) -> None:
    from redis.asyncio.connection import Connection
    from redis.exceptions import DataError

    def outcome(connection: object) -> object:
        try:
            return b"".join(bytes(p) for p in connection.pack_command("SET", "k", bad))  # type: ignore[attr-defined]
        except DataError as exc:
            return ("DataError", str(exc))

    assert outcome(HiredisConnection()) == outcome(Connection())


def test_a_real_server_answers_commands_packed_in_c(redis_url: str) -> None:
    async def roundtrip() -> list[object]:
        client = async_redis(Settings(redis_url=redis_url))
        try:
            await client.hset("vary:t:{x}", mapping={"ü": "✓", "n": 2**70, "f": 1 / 3})
            pipe = client.pipeline(transaction=False)
            pipe.hgetall("vary:t:{x}")
            pipe.eval("return #ARGV", 0, *range(100))
            pipe.eval("return ARGV[1000] .. ARGV[1]", 0, *(f"a{i}" * 50 for i in range(1, 1001)))  # in parts
            alone = await client.eval("return #ARGV", 0, *range(1000))  # in parts, outside a pipeline
            return [*await pipe.execute(), alone]
        finally:
            await client.aclose()

    stored, argc, last, alone = asyncio.run(roundtrip())
    assert alone == 1000
    assert stored == {"ü".encode(): "✓".encode(), b"n": str(2**70).encode(), b"f": repr(1 / 3).encode()}
    assert argc == 100
    assert last == b"a1000" * 50 + b"a1" * 50


# ------------------------------------------------------------------------------ on a real cluster


@pytest.fixture
def cluster_url(valkey_cluster: EmbeddedCluster) -> Iterator[str]:
    """The session cluster's URL, every primary flushed first."""
    client = sync_redis(Settings(redis_url=valkey_cluster.url))
    client.flushall()  # redis-py sends FLUSHALL to every primary
    client.close()
    yield valkey_cluster.url


def test_sync_client_routes_keys_to_their_nodes(cluster_url: str, valkey_cluster: EmbeddedCluster) -> None:
    client = sync_redis(Settings(redis_url=cluster_url), decode_responses=True)
    try:
        for i in range(60):
            client.set(profile_key(f"v{i}"), i)
        assert [int(client.get(profile_key(f"v{i}"))) for i in range(60)] == list(range(60))
    finally:
        client.close()
    per_node = [redis.Redis(port=port).dbsize() for port in valkey_cluster.ports]
    assert sum(per_node) == 60 and all(n > 0 for n in per_node)  # the keys really are spread


def test_the_same_cluster_from_a_seed_and_the_switch(cluster_url: str, valkey_cluster: EmbeddedCluster) -> None:
    async def run() -> bytes | None:
        writer = async_redis(Settings(redis_url=cluster_url))
        reader = async_redis(
            load_settings({"VARY_REDIS_URL": f"redis://127.0.0.1:{valkey_cluster.ports[-1]}", "VARY_REDIS_CLUSTER": "1"})
        )
        try:
            await writer.set("vary:probe", "x")
            return await reader.get("vary:probe")
        finally:
            await writer.aclose()
            await reader.aclose()

    assert asyncio.run(run()) == b"x"


def test_content_store_and_sync_lock_work_on_a_cluster(cluster_url: str) -> None:
    async def run() -> tuple[str | None, str | None, str | None]:
        client = async_redis(Settings(redis_url=cluster_url))
        other = async_redis(Settings(redis_url=cluster_url))
        try:
            first = ContentCoordinator(ExportFileSource(demo_space_path()), client, poll_interval_s=0)
            await first.start()
            second = ContentCoordinator(ExportFileSource(demo_space_path()), other, poll_interval_s=0)
            await second._adopt_stored(reason="test")
            stored = await ContentStore(client).load()
            await first.close()
            return first.state.version, second.state.version, stored.version if stored else None
        finally:
            await client.aclose()
            await other.aclose()

    synced, adopted, stored = asyncio.run(run())
    assert synced is not None and synced == adopted == stored


def test_content_store_refuses_a_decoding_cluster_client(cluster_url: str) -> None:
    async def run() -> None:
        client = async_redis(Settings(redis_url=cluster_url), decode_responses=True)
        try:
            with pytest.raises(ValueError, match="decode_responses=False"):
                ContentStore(client)
        finally:
            await client.aclose()

    asyncio.run(run())


def test_rate_limiter_counts_on_a_cluster(cluster_url: str) -> None:
    async def run() -> list[int]:
        client = async_redis(Settings(redis_url=cluster_url))
        limiter = RateLimiter(client, {"delivery": 3}, clock=lambda: 5000.5)
        codes = []
        try:
            await client.ping()  # discover the slots first (the app has done so long before a request)
            for _ in range(5):
                try:
                    await limiter.hit("some-delivery-key", "delivery")
                    codes.append(200)
                except HTTPException as exc:
                    codes.append(exc.status_code)
        finally:
            await client.aclose()
        assert limiter.failed_open == 0
        return codes

    assert asyncio.run(run()) == [200, 200, 200, 429, 429]


def test_model_registry_registers_activates_and_announces_across_nodes(cluster_url: str, model_dir: Path) -> None:
    version, card, data, _ = read_model_files(model_dir / "models", None)

    async def run() -> tuple[dict[str, str], list[tuple[str, str]]]:
        admin = async_redis(Settings(redis_url=cluster_url))
        worker = async_redis(Settings(redis_url=cluster_url))
        heard: list[tuple[str, str]] = []
        got = asyncio.Event()

        async def on_activate(slot: str, v: str) -> None:
            heard.append((slot, v))
            got.set()

        stop = asyncio.Event()
        # A worker has read the active versions before it follows: that discovers the slots, which
        # redis-py's cluster pub/sub needs to pick the channel's node.
        await ModelRegistry(worker).active_versions()
        follower = asyncio.create_task(ModelRegistry(worker).follow(on_activate, stop))
        try:
            registry = ModelRegistry(admin)
            await registry.register(data, card)
            await asyncio.sleep(0.3)  # the follower has subscribed
            await registry.activate(version)
            await asyncio.wait_for(got.wait(), 10)
            model = await registry.load(version)
            assert model.version == version
            return await registry.active_versions(), heard
        finally:
            stop.set()
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await admin.aclose()
            await worker.aclose()

    active, heard = asyncio.run(run())
    assert active == {SEGMENTS_SLOT: version}
    assert heard == [(SEGMENTS_SLOT, version)]


def test_profiles_load_from_whichever_node_holds_them(cluster_url: str) -> None:
    client = sync_redis(Settings(redis_url=cluster_url))
    for i in range(20):
        client.hset(profile_key(f"p{i}"), mapping={"visits": i, "a:hero": 1})
    client.close()

    async def run() -> list[tuple[int, dict[str, int]]]:
        store_client = async_redis(Settings(redis_url=cluster_url))
        store = RedisProfileStore(store_client)
        try:
            profiles = [await store.load(f"p{i}") for i in range(20)]
            return [(p.visits, p.assignments) for p in profiles]
        finally:
            await store_client.aclose()

    assert asyncio.run(run()) == [(i, {"hero": 1}) for i in range(20)]
