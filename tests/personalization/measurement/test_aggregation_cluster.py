"""The aggregation group over partitioned streams, continued: every call within one hash slot, a
real 3-node Valkey cluster, and the readers of partitioned streams (``read_streams``, the Parquet
export, erasure) — against the real Valkey server. (The shared scenario: ``aggregation_scenario.py``.)"""

from __future__ import annotations

import json
from datetime import UTC
from typing import ClassVar

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.crc import key_slot

from personalization.store.keys import EVENTS, EXPOSURES, visitor_keys_pattern
from personalization.store.partitions import all_streams
from tests.personalization.measurement.aggregation_scenario import (
    EVENTS_SET,
    EXPOSURES_SET,
    T0,
    N,
    baseline,
    make,
    pending,
    results,
    run,
)
from tests.personalization.measurement.stream_writes import drain, push

# ------------------------------------------------------------------------------ slot locality

_SINGLE_KEY = {"XACK", "XPENDING", "XAUTOCLAIM", "HSET", "HGET", "XADD", "TYPE", "HGETALL", "SMEMBERS"}


def _keys_of(args: tuple) -> list[bytes]:
    name = str(args[0]).upper() if not isinstance(args[0], bytes) else args[0].decode().upper()
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    if name in ("EVALSHA", "EVAL"):
        return parts[3 : 3 + int(parts[2])]
    if name == "XREADGROUP":
        rest = parts[parts.index(b"STREAMS") + 1 :]
        return rest[: len(rest) // 2]
    if name == "XGROUP":
        return [parts[2]]
    if name in _SINGLE_KEY:
        return [parts[1]]
    return []


class RecordingConnection(Connection):
    """Records the arguments of every command sent (single calls and pipelines alike)."""

    sent: ClassVar[list[tuple]] = []

    def pack_command(self, *args):
        RecordingConnection.sent.append(args)
        return super().pack_command(*args)


def test_cluster_mode_keeps_every_call_in_one_slot(redis_url: str) -> None:
    """``cluster=True`` on one node: every command the consumers send names keys of one slot only
    (scripts declare what they touch; the only keyless script call is step 1 of anonymous
    exposures, which reads no visitor state), and the results are those of the single-node layout."""
    expected = baseline(redis_url)
    RecordingConnection.sent = []

    async def body() -> dict[str, object]:
        plain = Redis.from_url(redis_url)
        await push(plain, EXPOSURES_SET, EVENTS_SET, N)
        redis = Redis.from_url(redis_url, connection_class=RecordingConnection)
        a, b = make(redis, "a", cluster=True), make(redis, "b", cluster=True, claim_idle_ms=0)
        await drain(a, b)
        await b.claim_stale()
        out = await results(plain)
        await redis.aclose()
        await plain.aclose()
        return out

    assert run(body()) == expected
    names: dict[str, int] = {}
    for args in RecordingConnection.sent:
        keys = _keys_of(args)
        name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        names[name.upper()] = names.get(name.upper(), 0) + 1
        slots = {key_slot(k) for k in keys}
        assert len(slots) <= 1, (args[0], keys)
        if name.upper() == "EVALSHA" and not keys:  # runs on any node: it must touch no key at all
            records = json.loads(args[3])
            assert records and all(r[0] == "x" and r[2] == "" == r[3] for r in records), records
    assert {"EVALSHA", "XREADGROUP", "XACK", "XPENDING", "XAUTOCLAIM", "HSET"} <= set(names)


def test_on_a_real_cluster(redis_url: str, valkey_cluster) -> None:
    """The scenario on a real 3-node Valkey cluster (the cluster client, four partitions over the
    nodes, two consumers, one of them claiming): exactly the single-node aggregates. The server
    itself refuses a script or command whose keys span slots on another node, so this also proves
    the calls route."""
    from api.redis_client import async_redis
    from api.settings import Settings

    expected = baseline(redis_url)

    async def body() -> tuple[dict[str, object], int]:
        redis = async_redis(Settings(redis_url=valkey_cluster.url))
        await redis.flushall()
        await push(redis, EXPOSURES_SET, EVENTS_SET, N)
        a, b = make(redis, "a"), make(redis, "b", claim_idle_ms=0)
        assert a.cluster and b.cluster
        await drain(a, b)
        await b.claim_stale()
        await drain(a, b)
        assert a.failed == b.failed == 0
        out = await results(redis)
        left = await pending(redis)
        await redis.flushall()
        await redis.aclose()
        return out, left

    got, left = run(body())
    assert left == 0
    assert got == expected


# ------------------------------------------------------------------------------ readers of the streams


def test_readers_merge_every_partition(redis_url: str, tmp_path) -> None:
    """read_streams, the Parquet export and erasure see the records of all (or the visitor's own)
    partitions, exactly once."""
    import time
    from datetime import date, datetime, timedelta

    import msgspec

    from personalization.measurement.events import EVENT_DECODER
    from personalization.measurement.export import export_streams
    from personalization.models.streams import read_streams
    from personalization.store.erasure import erase_visitor
    from personalization.types import EXPOSURE_DECODER

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        await push(redis, EXPOSURES_SET, EVENTS_SET, N)
        assert all([await redis.xlen(s) for s in all_streams(EXPOSURES, N)])  # really spread out
        merged = [x async for x in read_streams(redis, all_streams(EXPOSURES, N), EXPOSURE_DECODER, chunk=7)]
        assert sorted(x.id for x in merged) == sorted(x.id for x in EXPOSURES_SET)
        events = [e async for e in read_streams(redis, all_streams(EVENTS, N), EVENT_DECODER, chunk=7)]
        assert len(events) == len(EVENTS_SET)

        # Events are exported by their own ts (late writes allowed); exposures are stamped when written,
        # so the export looks for them near their stream ids: add a few written "today".
        first = date.fromtimestamp(T0 - 2 * 86_400)
        report = await export_streams(redis, tmp_path / "old", first, first + timedelta(days=40), partitions=N)
        assert report.events.rows == len(EVENTS_SET)
        now = time.time()
        fresh = [msgspec.structs.replace(x, id=f"now-{x.id}", ts=now) for x in EXPOSURES_SET[:20]]
        await push(redis, fresh, [], N)
        today = datetime.fromtimestamp(now, UTC).date()
        report = await export_streams(redis, tmp_path / "new", today, today, partitions=N)
        assert report.exposures.rows == len(fresh) and report.events.rows == 0
        await redis.delete(*all_streams(EXPOSURES, N))
        await push(redis, EXPOSURES_SET, [], N)

        await drain(make(redis, "a"))  # per-visitor state and step-1 outcomes exist
        visitor = "v3"
        mine_x = sum(x.visitor_id == visitor for x in EXPOSURES_SET)
        mine_e = sum(e.visitor_id == visitor for e in EVENTS_SET)
        assert mine_x and mine_e
        erased = await erase_visitor(redis, visitor, partitions=N)
        assert (erased.exposures_deleted, erased.events_deleted) == (mine_x, mine_e)
        assert erased.keys_deleted >= 2
        assert [k async for k in redis.scan_iter(visitor_keys_pattern(visitor))] == []
        left = [x async for x in read_streams(redis, all_streams(EXPOSURES, N), EXPOSURE_DECODER)]
        assert len(left) == len(EXPOSURES_SET) - mine_x
        await redis.aclose()

    run(body())


# ------------------------------------------------------------------------------ hostile visitor ids

#: Ids that broke (or could break) the cluster layout when the raw id was the hash tag: a leading
#: ``}`` left an empty tag, so ``}lead-brace``'s profile and event marker hashed to different slots.
HOSTILE = ["}lead-brace", "v{1}:x", "kv-alice", "kv-alice}:x", "a*b?[c]", "x" * 256, "visiteur-é-🙂"]


def test_hostile_visitor_ids_over_http_on_a_real_cluster(valkey_cluster, model_dir) -> None:
    """Issue #17, item 1, end to end on the embedded 3-node cluster: personalize and events for
    ``}lead-brace`` and other hostile ids are accepted (202, nothing spooled — the old keys made
    every event of ``}lead-brace`` a 503), every profile is counted, and one aggregation round
    counts every visitor's exposures and conversions with nothing failed or left pending."""
    import time

    from litestar.testing import TestClient

    from api.app import create_app
    from api.redis_client import async_redis, sync_redis
    from api.settings import Settings
    from personalization.measurement.aggregation import Aggregator
    from personalization.store.keys import AGG_EXPERIENCES_KEY, agg_key, profile_key
    from personalization.types import EXPOSURE_DECODER

    settings = Settings(
        redis_url=valkey_cluster.url, data_dir=model_dir, delivery_keys=("d-key",), admin_keys=("a-key",),
        train_demo_model=False, aggregate=False,
    )
    store = sync_redis(settings)
    store.flushall()
    delivery = {"Authorization": "Bearer d-key"}
    try:
        with TestClient(create_app(settings)) as client:
            for i, visitor in enumerate(HOSTILE):
                body = {"visitor": {"id": visitor, "country": "US"}, "entries": ["heroHome", "bannerShipping"]}
                assert client.post("/v1/personalize", json=body, headers=delivery).status_code == 200
                events = [
                    {"type": "page_view", "visitor_id": visitor, "session_id": f"s{i}", "channel": "web"},
                    {"type": "conversion", "visitor_id": visitor, "goal": "signup", "event_id": f"e{i}"},
                ]
                response = client.post("/v1/events", json={"events": events}, headers=delivery)
                assert response.status_code == 202, response.text
                assert response.json()["accepted"] == 2 and response.json()["spooled"] == 0
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and store.xlen(EXPOSURES) < 2 * len(HOSTILE):
                time.sleep(0.05)
        exposures = [EXPOSURE_DECODER.decode(f[b"data"]) for _, f in store.xrange(EXPOSURES)]
        assert {x.visitor_id for x in exposures} == set(HOSTILE)
        for visitor in HOSTILE:
            assert store.hget(profile_key(visitor), "page_views") == b"1", visitor

        async def aggregate() -> tuple[int, int, int]:
            redis = async_redis(settings)
            aggregator = Aggregator(redis, consumer="t", exposure_grace_s=0.0)
            await drain(aggregator)
            left = await pending(redis, 1)
            await redis.aclose()
            return aggregator.failed, aggregator.poisoned, left

        assert run(aggregate()) == (0, 0, 0)
        exposed: dict[str, set[str]] = {}
        for x in exposures:
            if x.experience:
                exposed.setdefault(x.experience, set()).add(x.visitor_id or "")
        assert exposed and {m.decode() for m in store.smembers(AGG_EXPERIENCES_KEY)} == set(exposed)
        for experience, visitors in exposed.items():
            counts = {k.decode(): int(v) for k, v in store.hgetall(agg_key(experience, "all")).items()}
            assert sum(v for k, v in counts.items() if k.endswith(":visitors")) == len(visitors), experience
            assert sum(v for k, v in counts.items() if k.endswith(":conv:signup")) == len(visitors), experience
    finally:
        store.flushall()
        store.close()
