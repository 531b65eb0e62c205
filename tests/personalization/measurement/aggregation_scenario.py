"""The scenario the partitioned-aggregation tests share: forty visitors' exposures and events, the
helpers that push them to (partitioned) streams and drain them with consumers, and the baseline:
what one consumer makes of them on one partition (computed once per test session)."""

from __future__ import annotations

import asyncio
import random

from redis.asyncio import Redis

from personalization.measurement.aggregation import Aggregator
from personalization.measurement.events import (
    Click,
    Conversion,
    Event,
    PageView,
    Purchase,
    Survey,
    Task,
)
from personalization.store.keys import EVENTS, EXPOSURES, VISITOR_PREFIX
from personalization.store.partitions import all_streams
from personalization.types import Exposure
from tests.personalization.measurement.stream_writes import drain, push

T0 = 1_700_000_000.0
WEEK = 7 * 86_400.0
DAY_START = (T0 // 86_400 + 1) * 86_400  # the midnight after T0
N = 4  # partitions
GROUP = "vary-aggregate"


def run(coro):
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


def make(redis: Redis, consumer: str, partitions: int = N, **kwargs) -> Aggregator:
    kwargs.setdefault("exposure_grace_s", 0.0)
    kwargs.setdefault("batch", 37)  # several batches, so consumers interleave
    return Aggregator(redis, consumer=consumer, partitions=partitions, **kwargs)


def _is_outcome_key(key: str) -> bool:
    """``vary:vh:{<visitor tag>}:agg:<day>``: step-1 outcomes (dedupe bookkeeping, like the markers)."""
    return key.startswith(VISITOR_PREFIX + "{") and key.rsplit("}", 1)[-1].startswith(":agg:")


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

        _BASELINE.update(run(body()))
    return _BASELINE
