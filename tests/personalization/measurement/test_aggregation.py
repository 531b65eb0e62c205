"""The aggregation consumer against the real Valkey server: exact counts, replay, attribution rules."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence

import pytest
from redis.asyncio import Redis

from personalization.measurement.aggregation import Aggregator
from personalization.measurement.attribution import (
    duration_bucket,
    top_segment,
    utc_day,
)
from personalization.measurement.events import (
    EVENT_STREAM,
    Abandonment,
    Click,
    Conversion,
    Event,
    Feedback,
    Identify,
    PageView,
    Purchase,
    Survey,
    Task,
)
from personalization.store.exposures import EXPOSURE_STREAM
from personalization.store.keys import agg_key, visitor_key_prefix
from personalization.types import Exposure
from tests.personalization.measurement.stream_writes import drain, push

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
DAY0, DAY1 = utc_day(T0), utc_day(T0 + 86_400)


def _run(coro):  # noqa: ANN001, ANN202 - small helper for async bodies
    return asyncio.run(coro)


def exposure(
    visitor: str | None,
    variant: int,
    ts: float,
    *,
    experience: str | None = "hero",
    channel: str = "web",
    segments: dict[str, float] | None = None,
    holdout: bool = False,
    entry: str = "hero-entry",
) -> Exposure:
    return Exposure(
        id=f"x-{visitor}-{ts}", ts=ts, visitor_id=visitor, session_id=None, channel=channel,
        entry_id=entry, variant_entry_id=f"{entry}-{variant}", experience=experience, variant=variant,
        is_control=variant == 0, holdout=holdout, propensity=0.5, segments=segments or {},
    )


def agg(redis, suffix: str, experience: str = "hero") -> dict[str, float]:  # noqa: ANN001
    raw = redis.hgetall(agg_key(experience, suffix))
    return {k: float(v) for k, v in raw.items()}


def snapshot(redis) -> dict[str, object]:  # noqa: ANN001
    """Every aggregate and attribution key with its content (dedupe markers excluded)."""
    out: dict[str, object] = {}
    for key in sorted(redis.scan_iter("vary:*")):
        if key.startswith("vary:agg:seen:") or key in (EXPOSURE_STREAM, EVENT_STREAM):
            continue
        kind = redis.type(key)
        out[key] = redis.hgetall(key) if kind == "hash" else sorted(redis.smembers(key))
    return out


def make_aggregator(redis: Redis, consumer: str = "c1", **kwargs) -> Aggregator:  # noqa: ANN003
    kwargs.setdefault("exposure_grace_s", 0.0)
    return Aggregator(redis, consumer=consumer, **kwargs)


SCENARIO_EXPOSURES: Sequence[Exposure] = (
    exposure("v1", 0, T0, segments={"price_sensitive": 0.8, "loyal": 0.6}),
    exposure("v1", 0, T0 + 5),  # a second exposure: one more entry, not one more visitor
    exposure("v2", 1, T0 + 1, channel="ios"),
    exposure("v3", 1, T0 + 2, segments={"loyal": 0.3}),
    exposure("v4", 0, T0 + 86_400, channel="ios", segments={"loyal": 0.9}),
    exposure(None, 0, T0 + 3),  # no analytics consent
    exposure("v5", 0, T0 + 4, experience=None, entry="banner"),  # content served outside experiences
    exposure("v6", 0, T0 + 6, holdout=True),
)
SCENARIO_EVENTS: Sequence[Event] = (
    Conversion(visitor_id="v1", goal="signup", ts=T0 + 10),
    Conversion(visitor_id="v1", goal="signup", ts=T0 + 11),  # same converter, second event
    Conversion(visitor_id="v2", goal="signup", value=10.0, ts=T0 + 12),
    Conversion(visitor_id="v2", goal="signup", value=5.0, ts=T0 + 13),
    Purchase(visitor_id="v3", order_id="o1", value=30.0, ts=T0 + 20, touchpoint="checkout"),
    Purchase(visitor_id="v3", order_id="o2", value=20.0, ts=T0 + 21, touchpoint="checkout"),
    Purchase(visitor_id="v3", order_id="o2", value=20.0, ts=T0 + 22, touchpoint="checkout"),  # same order
    Conversion(visitor_id="v4", goal="signup", ts=T0 + 86_400 + 50),
    Conversion(visitor_id="v6", goal="signup", ts=T0 + 60),  # held out
    Conversion(visitor_id="v9", goal="signup", ts=T0 + 60),  # never exposed
    Task(visitor_id="v2", name="find", success=True, duration_ms=1200, touchpoint="search", ts=T0 + 30),
    Task(visitor_id="v3", name="find", success=False, duration_ms=5000, touchpoint="search", ts=T0 + 30),
    Task(visitor_id="v3", name="find", success=True, touchpoint="search", ts=T0 + 31),
    Abandonment(visitor_id="v2", task="find", touchpoint="search", ts=T0 + 32),
    Click(visitor_id="v2", touchpoint="search", ts=T0 + 33),
    Click(visitor_id="v2", touchpoint="search", ts=T0 + 34),
    Click(visitor_id="v3", touchpoint="search", ts=T0 + 35),
    PageView(visitor_id="v1", touchpoint="search", ts=T0 + 36),
    Feedback(visitor_id="v2", text="slow", problem="slow", touchpoint="search", ts=T0 + 37),
    Feedback(visitor_id="v3", text="slow too", problem="slow", touchpoint="search", ts=T0 + 38),
    Feedback(visitor_id="v3", text="no filter", problem="filters", touchpoint="search", ts=T0 + 39),
    Survey(visitor_id="v1", metric="nps", score=9, ts=T0 + 40),
    Survey(visitor_id="v1", metric="csat", score=4, ts=T0 + 40),
    Survey(visitor_id="v2", metric="ces", score=2.4, ts=T0 + 40),
    Survey(visitor_id="v2", metric="sus", answers=[5, 1, 5, 1, 5, 1, 5, 1, 5, 1], touchpoint="search", ts=T0 + 41),
    Identify(visitor_id="v1", traits={"plan": "pro"}, ts=T0 + 42),
)


def test_exact_counts_dimensions_and_ux(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        await push(redis, SCENARIO_EXPOSURES, SCENARIO_EVENTS)
        aggregator = make_aggregator(redis)
        assert await drain(aggregator) == len(SCENARIO_EXPOSURES) + len(SCENARIO_EVENTS)
        assert aggregator.processed == len(SCENARIO_EXPOSURES) + len(SCENARIO_EVENTS)
        assert aggregator.duplicates == aggregator.failed == aggregator.skipped == 0
        pending = await redis.xpending(EVENT_STREAM, "vary-aggregate")
        assert pending["pending"] == 0  # the scripts acknowledged every entry
        await redis.aclose()

    _run(body())
    overall = agg(sync_redis, "all")
    assert overall == {
        "0:exposures": 4, "0:visitors": 2, "0:anonymous": 1,
        "1:exposures": 2, "1:visitors": 2,
        "h:exposures": 1, "h:visitors": 1, "h:events:signup": 1, "h:conv:signup": 1,
        "0:events:signup": 3, "0:conv:signup": 2,
        "1:events:signup": 2, "1:conv:signup": 1, "1:vsum:signup": 15, "1:vsumsq:signup": 225,
        "1:events:purchase": 2, "1:conv:purchase": 1, "1:vsum:purchase": 50, "1:vsumsq:purchase": 2500,
        "1:buyers": 1, "1:repeat_buyers": 1,
        # v3's orders have no currency (ISO's XXX): R = 50, O = 2 over the visitor
        "1:cur:XXX:orders": 2, "1:cur:XXX:revenue": 50, "1:cur:XXX:buyers": 1,
        "1:cur:XXX:rsq": 2500, "1:cur:XXX:osq": 4, "1:cur:XXX:ro": 100,
        "0:nps:9": 1, "0:csat:4": 1, "1:ces:2": 1,
    }
    # Channel and segment are the visitor's at first exposure; the anonymous exposure counts as an entry.
    web = agg(sync_redis, "ch:web")
    assert (web["0:exposures"], web["0:visitors"], web["0:conv:signup"], web["0:events:signup"]) == (3, 1, 1, 2)
    assert (web["1:visitors"], web["1:conv:purchase"]) == (1, 1)
    ios = agg(sync_redis, "ch:ios")
    assert (ios["0:visitors"], ios["0:conv:signup"], ios["1:visitors"], ios["1:conv:signup"]) == (1, 1, 1, 1)
    assert ios["1:vsum:signup"] == 15
    price = agg(sync_redis, "seg:price_sensitive")
    assert (price["0:visitors"], price["0:conv:signup"], price["0:exposures"]) == (1, 1, 1)
    assert agg(sync_redis, "seg:loyal")["0:visitors"] == 1  # v4 (0.9); v3 (0.3) is "none"
    none = agg(sync_redis, "seg:none")
    assert (none["0:exposures"], none.get("0:visitors"), none["1:visitors"]) == (2, None, 2)  # v1's 2nd + anonymous
    # Days: exposures and new visitors by exposure day; conversions by the event's day.
    day0, day1 = agg(sync_redis, f"day:{DAY0}"), agg(sync_redis, f"day:{DAY1}")
    assert (day0["0:visitors"], day0["0:conv:signup"], day1["0:visitors"], day1["0:conv:signup"]) == (1, 1, 1, 1)
    assert day1["0:exposures"] == 1 and day0["0:exposures"] == 3
    assert set(sync_redis.smembers(agg_key("hero", "dims"))) == {
        "ch:web", "ch:ios", "seg:none", "seg:price_sensitive", "seg:loyal", f"day:{DAY0}", f"day:{DAY1}"
    }
    assert set(sync_redis.smembers(agg_key("hero", "goals"))) == {"signup", "purchase"}
    # UX per touchpoint (all of it variant 1 except v1's page view).
    search = agg(sync_redis, "ux:search")
    log_sum = math.log(1200) + math.log(5000)
    assert search.pop("1:dur_lsum") == pytest.approx(log_sum)
    assert search.pop("1:dur_lsumsq") == pytest.approx(math.log(1200) ** 2 + math.log(5000) ** 2)
    assert search == {
        "1:tasks": 3, "1:task_ok": 2, "1:dur_n": 2, "1:dur_sum": 6200, "1:dur_sumsq": 1200**2 + 5000**2,
        f"1:dur_b:{duration_bucket(1200)}": 1, f"1:dur_b:{duration_bucket(5000)}": 1,
        "1:abandoned": 1, "1:clicks": 3, "1:clickers": 2, "1:feedback": 3, "0:page_views": 1,
        "1:sus_n": 1, "1:sus_sum": 100, "1:sus_sumsq": 10_000,
    }
    assert sync_redis.smembers(agg_key("hero", "problems:1:search")) == {"slow", "filters"}
    assert agg(sync_redis, "ux:checkout") == {"1:orders": 2, "1:revenue": 50, "1:revenue_sq": 1300}
    assert sync_redis.hgetall("vary:agg:content:all") == {"banner": "1"}
    assert sync_redis.smembers("vary:agg:experiences") == {"hero"}
    assert sync_redis.ttl(visitor_key_prefix("v1") + "x") > 300 * 86_400


def test_replay_changes_nothing(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    async def body() -> tuple[dict, dict, int]:
        redis = Redis.from_url(redis_url)
        await push(redis, SCENARIO_EXPOSURES, SCENARIO_EVENTS)
        aggregator = make_aggregator(redis)
        await drain(aggregator)
        before = snapshot(sync_redis)
        # Reset the group: every entry is delivered again, to a fresh consumer and to the old one.
        for stream in (EXPOSURE_STREAM, EVENT_STREAM):
            await redis.xgroup_setid(stream, "vary-aggregate", "0")
        again = make_aggregator(redis, consumer="c2")
        replayed = await drain(again)
        assert again.duplicates == replayed and again.processed == 0
        for stream in (EXPOSURE_STREAM, EVENT_STREAM):
            await redis.xgroup_setid(stream, "vary-aggregate", "0")
        await drain(aggregator)
        after = snapshot(sync_redis)
        await redis.aclose()
        return before, after, replayed

    before, after, replayed = _run(body())
    assert replayed == len(SCENARIO_EXPOSURES) + len(SCENARIO_EVENTS)
    assert after == before and len(before) > 10


def test_attribution_window_and_event_before_exposure(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    windows = {"short": 100.0, "long": 1000.0}

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        await push(
            redis,
            [exposure("a", 1, T0, experience="short"), exposure("a", 1, T0, experience="long"),
             exposure("b", 0, T0 + 500, experience="short")],
            [
                Conversion(visitor_id="a", goal="g1", ts=T0 + 50),  # both windows
                Conversion(visitor_id="a", goal="g2", ts=T0 + 150),  # only the long window
                Conversion(visitor_id="a", goal="g3", ts=T0 + 2000),  # neither
                Conversion(visitor_id="b", goal="g1", ts=T0 + 400),  # before b's exposure
                Conversion(visitor_id="b", goal="g2", ts=T0 + 500),  # at the exposure: counts
            ],
        )
        await drain(make_aggregator(redis, attribution_window_s=windows.__getitem__))
        await redis.aclose()

    _run(body())
    short, long = agg(sync_redis, "all", "short"), agg(sync_redis, "all", "long")
    assert {k: v for k, v in short.items() if ":conv:" in k} == {"1:conv:g1": 1, "0:conv:g2": 1}
    assert {k: v for k, v in long.items() if ":conv:" in k} == {"1:conv:g1": 1, "1:conv:g2": 1}


def test_sticky_variant_and_late_earlier_exposure(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        aggregator = make_aggregator(redis, attribution_window_s=100.0)
        await push(redis, [exposure("a", 2, T0 + 50)])
        await drain(aggregator)
        # Another variant later (weights changed before the sticky write): still variant 2.
        # An exposure processed late but stamped earlier moves the window start back.
        await push(redis, [exposure("a", 1, T0 + 60), exposure("a", 2, T0)])
        await drain(aggregator)
        await push(redis, [], [Conversion(visitor_id="a", goal="g", ts=T0 + 10),
                               Conversion(visitor_id="a", goal="late", ts=T0 + 120)])
        await drain(aggregator)
        await redis.aclose()

    _run(body())
    overall = agg(sync_redis, "all")
    assert overall["2:visitors"] == 1 and "1:visitors" not in overall
    assert overall["2:conv:g"] == 1 and "2:conv:late" not in overall  # window now ends at T0 + 100
    assert overall["variant_conflicts"] == 1
    assert (overall["1:exposures"], overall["2:exposures"]) == (1, 2)


def _random_traffic(seed: int, n: int) -> tuple[list[Exposure], list[Event], dict[str, int]]:
    rng = random.Random(seed)
    exposures, events, expected = [], [], {}
    for i in range(n):
        visitor, variant, ts = f"r{i}", rng.randrange(3), T0 + i
        channel = rng.choice(["web", "ios"])
        for _ in range(rng.randint(1, 3)):
            exposures.append(exposure(visitor, variant, ts, channel=channel))
        expected[f"{variant}:visitors"] = expected.get(f"{variant}:visitors", 0) + 1
        expected[f"{variant}:exposures"] = expected.get(f"{variant}:exposures", 0) + 0
        conversions = rng.choice([0, 0, 1, 2])
        for j in range(conversions):
            events.append(Conversion(visitor_id=visitor, goal="buy", value=float(j + 1), ts=ts + 10 + j))
        if conversions:
            expected[f"{variant}:conv:buy"] = expected.get(f"{variant}:conv:buy", 0) + 1
            expected[f"{variant}:events:buy"] = expected.get(f"{variant}:events:buy", 0) + conversions
    for x in exposures:
        expected[f"{x.variant}:exposures"] += 1
    rng.shuffle(events)
    return exposures, events, expected


def test_two_consumers_split_the_work_exactly(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    exposures, events, expected = _random_traffic(7, 400)

    async def body() -> tuple[int, int]:
        redis = Redis.from_url(redis_url)
        await push(redis, exposures, events)
        a, b = make_aggregator(redis, "a", batch=37), make_aggregator(redis, "b", batch=37)
        await drain(a, b)
        await redis.aclose()
        return a.processed, b.processed

    done_a, done_b = _run(body())
    assert done_a > 0 and done_b > 0 and done_a + done_b == len(exposures) + len(events)
    overall = agg(sync_redis, "all")
    assert {k: v for k, v in overall.items() if "vsum" not in k} == expected


def test_events_wait_for_exposures_in_flight(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    """An event is not counted while an exposure that may precede it is pending at another consumer."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        crashed = make_aggregator(redis, "crashed")
        await crashed.ensure_groups()
        await push(redis, [exposure("a", 1, T0)])
        # "crashed" reads the exposure and dies before processing it.
        await redis.xreadgroup("vary-aggregate", "crashed", {EXPOSURE_STREAM: ">"}, count=10)
        await push(redis, [], [Conversion(visitor_id="a", goal="g", ts=T0 + 1)])
        live = make_aggregator(redis, "live")
        assert await live.run_once() == 0 and live.held == 1
        # A grace period also holds fresh events.
        patient = make_aggregator(redis, "patient", exposure_grace_s=3600.0)
        await push(redis, [], [Conversion(visitor_id="a", goal="h", ts=T0 + 2)])
        assert await patient.run_once() == 0 and patient.held == 1
        # The crashed consumer restarts under its name and re-reads its own pending entries first.
        restarted = make_aggregator(redis, "crashed")
        assert await restarted.run_once() == 1
        assert await live.run_once() == 1 and live.held == 0
        patient.exposure_grace_s = 0.0
        assert await patient.run_once() == 1
        await redis.aclose()

    _run(body())
    overall = agg(sync_redis, "all")
    assert (overall["1:visitors"], overall["1:conv:g"], overall["1:conv:h"]) == (1, 1, 1)


def test_stale_entries_are_claimed_and_bad_entries_skipped(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    async def body() -> Aggregator:
        redis = Redis.from_url(redis_url)
        aggregator = make_aggregator(redis, "live", claim_idle_ms=0)
        await aggregator.ensure_groups()
        await push(redis, [exposure("a", 1, T0)])
        await redis.xadd(EVENT_STREAM, {"data": b"{not json"})
        await redis.xreadgroup("vary-aggregate", "dead", {EXPOSURE_STREAM: ">"}, count=10)
        assert await aggregator.claim_stale() == 1
        assert await aggregator.run_once() == 1  # the undecodable event: acknowledged, not counted
        assert aggregator.skipped == 1
        assert (await redis.xpending(EVENT_STREAM, "vary-aggregate"))["pending"] == 0
        await redis.aclose()
        return aggregator

    _run(body())
    assert agg(sync_redis, "all")["1:visitors"] == 1


def test_helpers() -> None:
    assert top_segment({}) == "none"
    assert top_segment({"a": 0.49}) == "none"
    assert top_segment({"a": 0.7, "b": 0.9}) == "b"
    assert top_segment({"b": 0.7, "a": 0.7}) == "a"
    assert utc_day(T0) == "2023-11-14"
    assert duration_bucket(1) == 0 and duration_bucket(10) == 50 and duration_bucket(999) == 149


def test_a_failing_record_does_not_hold_back_its_chunk(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    sync_redis.set(agg_key("broken", "all"), "not a hash")  # HINCRBY on it raises WRONGTYPE

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        await push(redis, [exposure("a", 0, T0), exposure("b", 0, T0 + 1, experience="broken"),
                           exposure("c", 1, T0 + 2)])
        aggregator = make_aggregator(redis)
        assert await drain(aggregator) == 3
        assert (await redis.xpending(EXPOSURE_STREAM, "vary-aggregate"))["pending"] == 0
        await redis.aclose()

    _run(body())
    overall = agg(sync_redis, "all")
    assert (overall["0:visitors"], overall["1:visitors"]) == (1, 1)


def test_run_forever_until_stopped(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        aggregator = make_aggregator(redis)
        stop = asyncio.Event()
        task = asyncio.create_task(aggregator.run_forever(stop, block_ms=50))
        await push(redis, [exposure("a", 1, T0)], [Conversion(visitor_id="a", goal="g", ts=T0 + 1)])
        for _ in range(200):
            if aggregator.processed == 2:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)
        await redis.aclose()

    _run(body())
    assert agg(sync_redis, "all")["1:conv:g"] == 1
