"""The aggregation group over partitioned streams: many consumers, dead consumers, crashes between
the steps, and every call within one hash slot — against the real Valkey server (and a real
3-node Valkey cluster)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterable
from datetime import UTC
from typing import ClassVar

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.crc import key_slot

from personalization.measurement.aggregation import Aggregator
from personalization.measurement.events import (
    EVENT_ENCODER,
    Click,
    Conversion,
    Event,
    PageView,
    Purchase,
    Survey,
    Task,
)
from personalization.store.partitions import EVENTS, EXPOSURES, all_streams, stream_for
from personalization.types import EXPOSURE_ENCODER, Exposure

T0 = 1_700_000_000.0
WEEK = 7 * 86_400.0
DAY_START = (T0 // 86_400 + 1) * 86_400  # the midnight after T0
N = 4  # partitions
GROUP = "vary-aggregate"


def _run(coro):
    return asyncio.run(coro)


def _exposure(**fields) -> Exposure:
    fields.setdefault("is_control", fields["variant"] == 0)
    fields.setdefault("holdout", False)
    fields.setdefault("propensity", 1 / 3)
    return Exposure(**fields)


def scenario(seed: int = 7, visitors: int = 40) -> tuple[list[Exposure], list[Event]]:
    """A few hundred exposures and events over three weeks and two experiences.

    The aggregates of one visitor do not depend on the order their entries are processed in as long
    as each visitor keeps one variant, channel and segment per experience and sends its events on
    one channel (channel *transitions* are order-dependent by design), and every value is a
    multiple of 0.5 (float sums are then exact in any order; only sums of logarithms of task
    durations differ in the last bits, see :func:`results`). So one consumer and many consumers
    over many partitions must produce the same keys and values.
    """
    rng = random.Random(seed)
    exposures: list[Exposure] = []
    events: list[Event] = []
    for i in range(visitors):
        visitor = f"v{i}"
        channel = rng.choice(["web", "ios", "android"])
        segments = {"loyal": rng.choice([0.2, 0.9]), "price_sensitive": rng.choice([0.1, 0.7])}
        # A visitor's exposures fall on one UTC day: "new visitors by day" counts the day of the first
        # exposure *processed*, which concurrent consumers may take in either order.
        start = DAY_START + rng.randrange(14) * 86_400 + rng.uniform(3600, 72_000)
        for experience in ("hero", "banner"):
            if rng.random() < 0.2:
                continue
            variant = rng.randrange(3)
            holdout = i % 9 == 0 and experience == "hero"
            for k in range(rng.randint(1, 3)):
                exposures.append(_exposure(
                    id=f"x-{visitor}-{experience}-{k}", ts=start + k * 600 + rng.uniform(0, 60),
                    visitor_id=visitor, session_id=None, channel=channel, entry_id=f"{experience}-entry",
                    variant_entry_id=f"{experience}-{variant}", experience=experience, variant=variant,
                    segments=segments, holdout=holdout,
                ))
        if rng.random() < 0.3:
            exposures.append(_exposure(
                id=f"c-{visitor}", ts=start + 10, visitor_id=visitor, session_id=None, channel=channel,
                entry_id="footer", variant_entry_id="footer", experience=None, variant=0, segments=segments,
            ))
        event_channel = rng.choice([channel, None])
        # A resent order repeats its ts and value, and a visitor's conversions on one goal fall on one
        # day: the first one *processed* is the one that counts (order, new converter of the day).
        orders = [(start + rng.uniform(-86_400, 9 * 86_400), rng.choice([10.0, 20.5])) for _ in range(3)]
        goal_days = {goal: rng.randrange(-1, 9) for goal in ("signup", "demo")}
        for k in range(rng.randint(0, 8)):
            ts = start + rng.uniform(-86_400, 9 * 86_400)  # some before the first exposure (CUPED X)
            kind = rng.randrange(6)
            if kind == 0:
                goal = rng.choice(["signup", "demo"])
                day = DAY_START + ((start - DAY_START) // 86_400 + goal_days[goal]) * 86_400
                events.append(Conversion(visitor_id=visitor, goal=goal, ts=day + rng.uniform(0, 86_000),
                                         value=rng.choice([None, 5.0, 12.5]), channel=event_channel))
            elif kind == 1:
                index = rng.randrange(3)  # repeated order ids: de-duplicated
                events.append(Purchase(visitor_id=visitor, order_id=f"{visitor}-o{index}", value=orders[index][1],
                                       ts=orders[index][0], touchpoint="checkout", channel=event_channel))
            elif kind == 2:
                events.append(Task(visitor_id=visitor, name="find", success=rng.random() < 0.6,
                                   duration_ms=rng.choice([None, 1000, 4096]), touchpoint="search", ts=ts,
                                   channel=event_channel))
            elif kind == 3:
                events.append(Click(visitor_id=visitor, touchpoint="search", ts=ts, channel=event_channel))
            elif kind == 4:
                events.append(Survey(visitor_id=visitor, metric=rng.choice(["nps", "csat"]),
                                     score=rng.choice([3, 4, 5]), ts=ts, channel=event_channel))
            else:
                events.append(PageView(visitor_id=visitor, touchpoint="home", ts=ts, channel=event_channel))
    for i in range(5):  # no analytics consent: counted as anonymous exposures
        exposures.append(_exposure(
            id=f"anon-{i}", ts=T0 + i, visitor_id=None, session_id=None, channel="web", entry_id="hero-entry",
            variant_entry_id="hero-entry-0", experience="hero", variant=0,
        ))
    rng.shuffle(exposures)  # written out of ts order, as many API workers would
    rng.shuffle(events)
    return exposures, events


EXPOSURES_SET, EVENTS_SET = scenario()


async def push(redis: Redis, exposures: Iterable[Exposure], events: Iterable[Event], partitions: int) -> None:
    """XADD each record to its visitor's partition, as the writers do."""
    pipe = redis.pipeline(transaction=False)
    for x in exposures:
        pipe.xadd(stream_for(EXPOSURES, x.visitor_id, partitions), {"data": EXPOSURE_ENCODER.encode(x)})
    for e in events:
        pipe.xadd(stream_for(EVENTS, e.visitor_id, partitions), {"data": EVENT_ENCODER.encode(e)})
    await pipe.execute()


async def drain(*aggregators: Aggregator) -> int:
    total = 0
    while True:
        counts = await asyncio.gather(*(a.run_once() for a in aggregators))
        total += sum(counts)
        if not any(counts) and not any(a.held for a in aggregators):
            return total


def make(redis: Redis, consumer: str, partitions: int = N, **kwargs) -> Aggregator:
    kwargs.setdefault("exposure_grace_s", 0.0)
    kwargs.setdefault("batch", 37)  # several batches, so consumers interleave
    return Aggregator(redis, consumer=consumer, partitions=partitions, **kwargs)


def _is_outcome_key(key: str) -> bool:
    """``vary:v:{<visitor>}:agg:<day>``: step-1 outcomes (dedupe bookkeeping, like the markers)."""
    return key.startswith("vary:v:{") and key.rsplit("}", 1)[-1].startswith(":agg:")


def _value(text: str) -> str:
    """A stored value; a non-integer number to 12 significant digits, since sums of irrational
    terms (ln durations) depend in their last bits on the order they were added in."""
    if "." in text:
        try:
            return f"{float(text):.12g}"
        except ValueError:
            return text
    return text


async def results(redis: Redis) -> dict[str, object]:
    """Every aggregate and per-visitor key with its content (numbers as :func:`_value`); dedupe
    bookkeeping and streams excluded."""
    out: dict[str, object] = {}
    async for raw in redis.scan_iter("vary:*", count=1000):
        key = raw.decode()
        if key.startswith(("vary:agg:seen:", "vary:exposures", "vary:events")) or _is_outcome_key(key):
            continue
        kind = (await redis.type(raw)).decode()
        if kind == "hash":
            out[key] = {k.decode(): _value(v.decode()) for k, v in (await redis.hgetall(raw)).items()}
        else:
            out[key] = sorted(m.decode() for m in await redis.smembers(raw))
    return dict(sorted(out.items()))


async def pending(redis: Redis, partitions: int = N) -> int:
    total = 0
    for stream in all_streams(EXPOSURES, partitions) + all_streams(EVENTS, partitions):
        total += (await redis.xpending(stream, GROUP))["pending"]
    return total


_BASELINE: dict[str, object] = {}


def baseline(redis_url: str) -> dict[str, object]:
    """The aggregates one consumer makes of the scenario on one partition (the historical layout)."""
    if not _BASELINE:
        async def body() -> dict[str, object]:
            redis = Redis.from_url(redis_url)
            await redis.flushall()
            await push(redis, EXPOSURES_SET, EVENTS_SET, 1)
            single = make(redis, "solo", partitions=1, batch=500)
            assert await drain(single) == len(EXPOSURES_SET) + len(EVENTS_SET)
            assert single.processed == len(EXPOSURES_SET) + len(EVENTS_SET) and single.failed == 0
            out = await results(redis)
            await redis.flushall()
            await redis.aclose()
            return out

        _BASELINE.update(_run(body()))
    return _BASELINE


def test_scenario_is_rich_enough(redis_url: str) -> None:
    base = baseline(redis_url)
    hero = base["vary:agg:{hero}:all"]
    assert isinstance(hero, dict)
    assert {"0:visitors", "1:visitors", "2:visitors", "h:visitors", "0:anonymous"} <= set(hero)
    assert any(":conv:" in k for k in hero) and any(k.endswith(":buyers") for k in hero)
    assert any(k.endswith(":repeat_buyers") for k in hero) and "vary:agg:{hero}:ux:search" in base
    assert any(k.endswith(":xsum:purchase") for k in hero)  # pre-exposure values reached CUPED
    assert any(k.startswith("vary:cx:{w:") for k in base) and "vary:agg:content:all" in base


def test_two_consumers_on_four_partitions_equal_one(redis_url: str) -> None:
    expected = baseline(redis_url)

    async def body() -> tuple[dict[str, object], int, int, int]:
        redis = Redis.from_url(redis_url)
        await push(redis, EXPOSURES_SET, EVENTS_SET, N)
        a, b = make(redis, "a"), make(redis, "b")
        total = await drain(a, b)
        out = await results(redis)
        left = await pending(redis)
        await redis.aclose()
        return out, total, a.processed + b.processed, left

    got, total, processed, left = _run(body())
    assert total == processed == len(EXPOSURES_SET) + len(EVENTS_SET)
    assert left == 0
    assert got == expected


@pytest.mark.parametrize("how", ["never acks", "cancelled mid-batch"])
def test_a_dead_consumers_entries_are_claimed_and_counted_once(redis_url: str, how: str) -> None:
    expected = baseline(redis_url)

    async def body() -> tuple[dict[str, object], int, int]:
        redis = Redis.from_url(redis_url)
        await push(redis, EXPOSURES_SET, EVENTS_SET, N)
        live = make(redis, "live", claim_idle_ms=0)
        await live.ensure_groups()
        if how == "never acks":  # read under its own name, then gone: the entries sit in its PEL
            streams = {s: ">" for s in all_streams(EXPOSURES, N) + all_streams(EVENTS, N)}
            got = await redis.xreadgroup(GROUP, "dead", streams, count=25)
            assert got
        else:  # a real consumer task, cancelled between step 1 and step 2 of its third batch
            dead = CancelledAggregator(redis, consumer="dead", partitions=N, exposure_grace_s=0.0, batch=10)
            task = asyncio.create_task(dead.run_forever(asyncio.Event(), block_ms=10))
            with pytest.raises(asyncio.CancelledError):
                await task
            assert dead.calls == 3 and dead.processed > 0
        stranded = await pending(redis)
        # Events wait while exposures are pending at the dead consumer; claiming them unblocks both.
        assert await live.claim_stale() > 0
        await drain(live)
        out = await results(redis)
        left = await pending(redis)
        await redis.aclose()
        return out, left, stranded

    got, left, stranded = _run(body())
    assert stranded > 0  # the dead consumer really left work behind
    assert left == 0
    assert got == expected


class _Crash(Exception):
    """The process dies here (a fault injected between two steps; Redis keeps what was written)."""


class CrashingAggregator(Aggregator):
    """Dies on its ``crash_call``-th step-2 call, before it (after step 1) or after it (before XACK)."""

    def __init__(self, *args, crash_call: int, after_step2: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.crash_call = crash_call
        self.after_step2 = after_step2
        self.calls = 0

    async def _apply(self, items) -> None:
        self.calls += 1
        if self.calls == self.crash_call and not self.after_step2:
            raise _Crash
        await super()._apply(items)
        if self.calls == self.crash_call:
            raise _Crash


class CancelledAggregator(Aggregator):
    """Its task is cancelled (for real) when it reaches step 2 of its third step-2 call."""

    calls = 0

    async def _apply(self, items) -> None:
        self.calls += 1
        if self.calls == 3:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)  # the cancellation lands here
        await super()._apply(items)


@pytest.mark.parametrize("crash_call", [1, 2], ids=["exposures", "events"])
@pytest.mark.parametrize("after_step2", [False, True], ids=["after-step-1", "after-step-2"])
def test_a_crash_between_steps_counts_once(redis_url: str, crash_call: int, after_step2: bool) -> None:
    expected = baseline(redis_url)

    async def body() -> tuple[dict[str, object], int]:
        redis = Redis.from_url(redis_url)
        await push(redis, EXPOSURES_SET, EVENTS_SET, N)
        crashy = CrashingAggregator(
            redis, consumer="crashy", partitions=N, exposure_grace_s=0.0, batch=500,
            crash_call=crash_call, after_step2=after_step2,
        )
        with pytest.raises(_Crash):
            await crashy.run_once()
        live = make(redis, "live", claim_idle_ms=0)
        await live.claim_stale()  # the dead consumer's entries: their stored outcomes are completed
        await drain(live)
        out = await results(redis)
        left = await pending(redis)
        await redis.aclose()
        return out, left

    got, left = _run(body())
    assert left == 0
    assert got == expected


def test_a_restarted_consumer_completes_its_own_pending_entries(redis_url: str) -> None:
    """The same consumer name after a crash re-reads its own PEL on the first run (no claim needed)."""
    expected = baseline(redis_url)

    async def body() -> dict[str, object]:
        redis = Redis.from_url(redis_url)
        await push(redis, EXPOSURES_SET, EVENTS_SET, N)
        crashy = CrashingAggregator(redis, consumer="same", partitions=N, exposure_grace_s=0.0, batch=500,
                                    crash_call=1, after_step2=False)
        with pytest.raises(_Crash):
            await crashy.run_once()
        await drain(make(redis, "same"))
        out = await results(redis)
        assert await pending(redis) == 0
        await redis.aclose()
        return out

    assert _run(body()) == expected


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

    assert _run(body()) == expected
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

    got, left = _run(body())
    assert left == 0
    assert got == expected


# ------------------------------------------------------------------------------ readers of the streams


def test_readers_merge_every_partition(redis_url: str, tmp_path) -> None:
    """read_streams, the Parquet export and erasure see the records of all (or the visitor's own)
    partitions, exactly once."""
    import time
    from datetime import date, datetime, timedelta

    import msgspec

    from personalization.store.erasure import erase_visitor
    from personalization.measurement.events import EVENT_DECODER
    from personalization.measurement.export import export_streams
    from personalization.models.logged import read_streams
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
        assert [k async for k in redis.scan_iter(f"*{{{visitor}}}*")] == []
        left = [x async for x in read_streams(redis, all_streams(EXPOSURES, N), EXPOSURE_DECODER)]
        assert len(left) == len(EXPOSURES_SET) - mine_x
        await redis.aclose()

    _run(body())
