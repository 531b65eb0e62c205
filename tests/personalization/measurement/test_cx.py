"""Journey (CX) metrics: the aggregation consumer's global counters read back by ``journey_metrics``,
against the ``ux_cx`` formulas and brute-force counts over the same events, on the real Valkey server."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import date, timedelta

import msgspec
import pytest
from redis.asyncio import Redis

from personalization.measurement.aggregation import Aggregator
from personalization.measurement.attribution import week_index
from personalization.measurement.cx import (
    CxPeriod,
    CxReport,
    iso_week_label,
    journey_metrics,
    parse_period,
    week_monday,
    weekly_metrics,
)
from personalization.measurement.events import (
    EVENT_STREAM,
    Click,
    Event,
    Identify,
    PageView,
    Purchase,
    Survey,
)
from personalization.measurement.recorder import EventRecorder
from personalization.measurement.ux_cx import (
    ces_from_histogram,
    channel_switching,
    csat_from_histogram,
    nps_from_histogram,
    repeat_purchase_rate,
    retention_by_cohort,
)
from personalization.store.exposures import EXPOSURE_STREAM
from personalization.types import Exposure
from tests.personalization.measurement.stream_writes import drain, push

MONDAY = date(2023, 11, 13)  # ISO week 2023-W46
W0 = 1_699_833_600.0 + 3600  # Monday 2023-11-13 01:00 UTC
WEEK = 7 * 86_400.0
NOW = W0 + 52 * WEEK  # "now" for retention: long after the data


def _run(coro):  # noqa: ANN001, ANN202 - small helper for async bodies
    return asyncio.run(coro)


def exposure(visitor: str, ts: float, *, channel: str = "web", segments: dict[str, float] | None = None) -> Exposure:
    return Exposure(
        id=f"x-{visitor}-{ts}", ts=ts, visitor_id=visitor, session_id=None, channel=channel, entry_id="hero",
        variant_entry_id="hero-0", experience=None, variant=0, is_control=True, holdout=False, propensity=1.0,
        segments=segments or {},
    )


def make_aggregator(redis: Redis, consumer: str = "c1", **kwargs) -> Aggregator:  # noqa: ANN003
    kwargs.setdefault("exposure_grace_s", 0.0)
    return Aggregator(redis, consumer=consumer, **kwargs)


async def report(redis: Redis, since: date | None = None, until: date | None = None, **kwargs) -> CxReport:  # noqa: ANN003
    return await journey_metrics(redis, since=since, until=until, now=NOW, **kwargs)


def week_of(k: int) -> date:
    return MONDAY + timedelta(days=7 * k)


def test_week_helpers() -> None:
    assert week_index(0) == 0 and week_index(4 * 86_400 - 1) == 0 and week_index(4 * 86_400) == 1  # Mon 1970-01-05
    w = week_index(W0)
    assert week_monday(w) == MONDAY and iso_week_label(w) == "2023-W46"
    assert week_index(W0 - 3601) == w - 1 and week_index(W0 + WEEK - 3601) == w  # Sunday 23:59:59 is still W46
    assert iso_week_label(week_index(1_704_067_200.0)) == "2024-W01"  # Monday 2024-01-01
    assert iso_week_label(week_index(1_703_980_800.0)) == "2023-W52"  # Sunday 2023-12-31
    assert parse_period(None, None) == (None, None)
    assert parse_period("2023-11-13", "2023-11-20") == (MONDAY, week_of(1))
    with pytest.raises(ValueError, match="^since: "):
        parse_period("13/11/2023", None)
    with pytest.raises(ValueError, match="^until: "):
        parse_period(None, "tomorrow")
    with pytest.raises(ValueError, match="after until"):
        parse_period("2023-11-20", "2023-11-13")


def test_surveys_by_channel_and_segment_match_ux_cx(redis_url: str) -> None:
    """NPS / CSAT / CES overall and per channel / segment equal the ux_cx functions on the same answers."""
    rng = random.Random(5)
    channels = ["web", "ios", "email"]
    segments = {"v0": {"loyal": 0.9}, "v1": {"loyal": 0.7, "bargain": 0.8}, "v2": {"loyal": 0.2}}
    exposures = [exposure(v, W0, segments=s) for v, s in segments.items()]
    events: list[Event] = []
    answers: list[tuple[str, str, str, int]] = []  # channel, segment, metric, score
    seg_of = {"v0": "loyal", "v1": "bargain", "v2": "none", "v3": "none"}  # v3: never exposed
    scale = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
    for i in range(120):
        visitor = f"v{rng.randrange(4)}"
        metric = rng.choice(["nps", "csat", "ces"])
        score = rng.randint(*scale[metric])
        channel = rng.choice(channels)
        events.append(Survey(visitor_id=visitor, metric=metric, score=score, channel=channel, ts=W0 + 60 + i))
        answers.append((channel, seg_of[visitor], metric, score))
    # A SUS answer and an out-of-scale CSAT are not CX histogram entries.
    events.append(Survey(visitor_id="v0", metric="sus", score=80, channel="web", ts=W0 + 500))
    events.append(Survey(visitor_id="v0", metric="csat", score=9, channel="web", ts=W0 + 501))

    async def body() -> CxReport:
        redis = Redis.from_url(redis_url)
        await push(redis, exposures, [])
        aggregator = make_aggregator(redis)
        await drain(aggregator)  # exposures first, so every survey knows the visitor's segment
        await push(redis, [], events)
        await drain(aggregator)
        result = await report(redis)
        await redis.aclose()
        return result

    result = _run(body())

    def hist(metric: str, keep=lambda ch, seg: True) -> dict[int, int]:  # noqa: ANN001
        out: dict[int, int] = defaultdict(int)
        for ch, seg, m, score in answers:
            if m == metric and keep(ch, seg):
                out[score] += 1
        return dict(out)

    assert result.nps == nps_from_histogram(hist("nps"))
    assert result.csat == csat_from_histogram(hist("csat"))
    assert result.ces == ces_from_histogram(hist("ces"))
    assert result.nps.n + result.csat.n + result.ces.n == 120
    assert set(result.by_channel) == set(channels)
    for ch, block in result.by_channel.items():
        assert block.nps == nps_from_histogram(hist("nps", lambda c, s: c == ch))
        assert block.csat == csat_from_histogram(hist("csat", lambda c, s: c == ch))
        assert block.ces == ces_from_histogram(hist("ces", lambda c, s: c == ch))
    assert set(result.by_segment) == {"loyal", "bargain", "none"}
    for seg, block in result.by_segment.items():
        assert block.nps == nps_from_histogram(hist("nps", lambda c, s: s == seg))
        assert block.csat == csat_from_histogram(hist("csat", lambda c, s: s == seg))
        assert block.ces == ces_from_histogram(hist("ces", lambda c, s: s == seg))
    assert result.csat.score is not None and 0 <= result.csat.score <= 100  # percent

    async def only_channels() -> CxReport:
        redis = Redis.from_url(redis_url)
        result = await report(redis, by="channel")
        await redis.aclose()
        return result

    by_channel = _run(only_channels())
    assert by_channel.by_channel == result.by_channel and by_channel.by_segment == {}


# A hand-built three-week example: cohort W46 = a, b, c, d; W47 = e, f; W48 = g.
RETENTION_ACTIVITY = {
    "a": [0, 1, 2],
    "b": [0, 1],
    "c": [0, 2],
    "d": [0],
    "e": [1, 2],
    "f": [1],
    "g": [2],
}


def _activity_events() -> list[Event]:
    events: list[Event] = []
    for visitor, weeks in RETENTION_ACTIVITY.items():
        for k in weeks:
            events.append(PageView(visitor_id=visitor, channel="web", ts=W0 + k * WEEK + 100))
            events.append(Click(visitor_id=visitor, ts=W0 + k * WEEK + 200))  # no channel: activity still
    return events


def test_retention_by_cohort_on_three_weeks(redis_url: str) -> None:
    async def body() -> tuple[CxReport, CxReport, CxReport]:
        redis = Redis.from_url(redis_url)
        # Processed out of order: the newest week first, then the rest in three batches.
        events = sorted(_activity_events(), key=lambda e: -(e.ts or 0))
        aggregator = make_aggregator(redis, batch=5)
        for start in range(0, len(events), 6):
            await push(redis, [], events[start : start + 6])
            await drain(aggregator)
        full = await report(redis)
        # A period ending in W47: W48 has not "happened" for it.
        two_weeks = await report(redis, since=MONDAY, until=week_of(1) + timedelta(days=3))
        # A period starting in W47 shows only the cohorts that start in it.
        later = await report(redis, since=week_of(1), until=week_of(2))
        await redis.aclose()
        return full, two_weeks, later

    full, two_weeks, later = _run(body())
    assert full.retention.cohorts == {"2023-W46": [1.0, 0.5, 0.5], "2023-W47": [1.0, 0.5], "2023-W48": [1.0]}
    assert full.retention.sizes == {"2023-W46": 4, "2023-W47": 2, "2023-W48": 1}
    assert full.retention.churn == {"2023-W46": 0.5, "2023-W47": 0.5, "2023-W48": None}
    assert full.period.since == MONDAY and full.period.until == week_of(3) - timedelta(days=1)
    # The same definition as ux_cx.retention_by_cohort on the per-visitor data.
    first = {v: min(ws) for v, ws in RETENTION_ACTIVITY.items()}
    reference = {r.cohort: r for r in retention_by_cohort(first, RETENTION_ACTIVITY, max_weeks=2)}
    assert full.retention.cohorts["2023-W46"] == list(reference[0].retention)
    assert full.retention.churn["2023-W46"] == reference[0].churn
    assert full.retention.cohorts["2023-W47"] == list(reference[1].retention)
    assert two_weeks.retention.cohorts == {"2023-W46": [1.0, 0.5], "2023-W47": [1.0]}
    assert two_weeks.retention.churn == {"2023-W46": 0.5, "2023-W47": None}
    assert later.retention.cohorts == {"2023-W47": [1.0, 0.5], "2023-W48": [1.0]}
    # Active visitors in the period; all single-channel ("web"; the clicks carry none).
    active = [r.channel_switching.share.n for r in (full, two_weeks, later)]
    assert active == [7, 6, 6]
    assert full.channel_switching.share.score == 0.0 and full.channel_switching.transitions == []


def test_a_late_earlier_event_moves_the_cohort(redis_url: str) -> None:
    async def body() -> tuple[CxReport, CxReport]:
        redis = Redis.from_url(redis_url)
        aggregator = make_aggregator(redis)
        await push(redis, [], [PageView(visitor_id="e", channel="web", ts=W0 + WEEK + 5)])
        await drain(aggregator)
        before = await report(redis)
        await push(redis, [exposure("e", W0 + 5, channel="ios")], [])  # an exposure is activity too
        await drain(aggregator)
        after = await report(redis)
        await redis.aclose()
        return before, after

    before, after = _run(body())
    assert before.retention.cohorts == {"2023-W47": [1.0]}
    assert after.retention.cohorts == {"2023-W46": [1.0, 1.0]} and after.retention.sizes == {"2023-W46": 1}
    assert after.channel_switching.share.score == 1.0  # seen on ios (exposure) and web
    assert after.channel_switching.transitions == []  # transitions come from events only


def test_repeat_purchase_rate_over_periods(redis_url: str) -> None:
    purchases = [  # visitor, week, order
        ("p1", 0, "a"), ("p1", 0, "b"),
        ("p2", 0, "c"), ("p2", 1, "d"),
        ("p3", 1, "e"),
        ("p4", 2, "f"), ("p4", 2, "g"), ("p4", 2, "h"),
    ]
    events: list[Event] = [
        Purchase(visitor_id=v, order_id=o, value=10.0, channel="web", ts=W0 + k * WEEK + i)
        for i, (v, k, o) in enumerate(purchases)
    ]
    events.append(Purchase(visitor_id="p3", order_id="e", value=10.0, channel="web", ts=W0 + WEEK + 99))  # resent

    async def body() -> dict[tuple[int, int], CxReport]:
        redis = Redis.from_url(redis_url)
        await push(redis, [], events)
        await drain(make_aggregator(redis))
        out = {(a, b): await report(redis, since=week_of(a), until=week_of(b)) for a in range(3) for b in range(a, 3)}
        await redis.aclose()
        return out

    reports = _run(body())
    expected = {(0, 0): (1, 2), (1, 1): (0, 2), (2, 2): (1, 1), (0, 1): (2, 3), (1, 2): (1, 3), (0, 2): (3, 4)}
    for period, (repeat, buyers) in expected.items():
        assert reports[period].repeat_purchase_rate == repeat_purchase_rate(repeat, buyers), period
        assert reports[period].by_channel["web"].repeat_purchase_rate == repeat_purchase_rate(repeat, buyers)


def test_channel_switching_share_and_transitions(redis_url: str) -> None:
    sequence = [  # visitor, ts offset, channel
        ("x", 0, "web"), ("x", 10, "ios"), ("x", 20, "ios"), ("x", 30, "web"),
        ("y", 5, "web"), ("y", 15, "web"),
        ("z", 1, "ios"), ("z", 2, "android"), ("z", 3, "ios"),
        ("w", 7, "ios"), ("w", 8, "web"),
    ]
    events = [PageView(visitor_id=v, channel=c, ts=W0 + t) for v, t, c in sequence]  # type: ignore[arg-type]
    events.append(Identify(visitor_id="y", ts=W0 + 40))  # no channel: activity, no transition

    async def body() -> CxReport:
        redis = Redis.from_url(redis_url)
        shuffled = list(events)
        random.Random(3).shuffle(shuffled)  # one batch: released in ts order
        await push(redis, [], shuffled)
        await drain(make_aggregator(redis))
        result = await report(redis)
        await redis.aclose()
        return result

    result = _run(body())
    reference = channel_switching(sorted(((v, t, c) for v, t, c in sequence), key=lambda e: e[1]))
    assert result.channel_switching.share == reference.multi_channel
    assert result.channel_switching.share.score == pytest.approx(3 / 4)
    got = [(t.from_, t.to, t.count) for t in result.channel_switching.transitions]
    assert got == [(t.from_channel, t.to_channel, t.count) for t in reference.transitions]
    assert got == [("ios", "web", 2), ("android", "ios", 1), ("ios", "android", 1), ("web", "ios", 1)]
    encoded = msgspec.json.decode(msgspec.json.encode(result.channel_switching))
    assert encoded["transitions"][0] == {"from": "ios", "to": "web", "count": 2}


def test_distinct_counts_are_exact_for_every_period_and_order(redis_url: str) -> None:
    """Buyers, repeat buyers, active and multi-channel visitors over every range of weeks equal brute
    force, with entries processed in random order over many batches."""
    rng = random.Random(11)
    weeks, channels = 5, ["web", "ios", "store"]
    events: list[Event] = []
    exposures: list[Exposure] = []
    for v in range(60):
        for i in range(rng.randint(1, 6)):
            k, ch = rng.randrange(weeks), rng.choice(channels[: rng.randint(1, 3)])
            ts = W0 + k * WEEK + rng.randrange(500_000)
            if rng.random() < 0.4:
                order = f"o{v}-{i}"
                events.append(Purchase(visitor_id=f"r{v}", order_id=order, value=1.0, channel=ch, ts=ts))  # type: ignore[arg-type]
            elif rng.random() < 0.3:
                exposures.append(exposure(f"r{v}", ts, channel=ch))
            else:
                events.append(PageView(visitor_id=f"r{v}", channel=ch, ts=ts))  # type: ignore[arg-type]
    rng.shuffle(events)
    rng.shuffle(exposures)

    async def body() -> dict[tuple[int, int], CxReport]:
        redis = Redis.from_url(redis_url)
        aggregator = make_aggregator(redis, batch=13)
        for start in range(0, max(len(events), len(exposures)), 25):
            await push(redis, exposures[start : start + 25], events[start : start + 25])
            await drain(aggregator)
        out = {
            (a, b): await report(redis, since=week_of(a), until=week_of(b))
            for a in range(weeks) for b in range(a, weeks)
        }
        await redis.aclose()
        return out

    reports = _run(body())
    seen: list[tuple[str, int, str, bool]] = [
        (e.visitor_id, week_index(e.ts or 0) - week_index(W0), e.channel or "", isinstance(e, Purchase))
        for e in events
    ]
    seen += [(x.visitor_id or "", week_index(x.ts) - week_index(W0), x.channel, False) for x in exposures]
    for (a, b), result in reports.items():
        inside = [s for s in seen if a <= s[1] <= b]
        visitors = {s[0] for s in inside}
        channels_of: dict[str, set[str]] = defaultdict(set)
        orders: dict[str, int] = defaultdict(int)
        web_orders: dict[str, int] = defaultdict(int)
        for visitor, _, channel, purchase in inside:
            channels_of[visitor].add(channel)
            orders[visitor] += purchase
            web_orders[visitor] += purchase and channel == "web"
        multi = sum(len(c) >= 2 for c in channels_of.values())
        share = result.channel_switching.share
        assert (share.n, round((share.score or 0) * share.n)) == (len(visitors), multi), (a, b)
        buyers, repeat = sum(n >= 1 for n in orders.values()), sum(n >= 2 for n in orders.values())
        assert result.repeat_purchase_rate == repeat_purchase_rate(repeat, buyers), (a, b)
        web_buyers, web_repeat = sum(n >= 1 for n in web_orders.values()), sum(n >= 2 for n in web_orders.values())
        web = result.by_channel.get("web")
        assert (web.repeat_purchase_rate if web else repeat_purchase_rate(0, 0)) == repeat_purchase_rate(
            web_repeat, web_buyers
        ), (a, b)
    # Cohorts: first week seen (events or exposures), as ux_cx.retention_by_cohort counts them.
    active: dict[str, set[int]] = defaultdict(set)
    for visitor, k, _, _ in seen:
        active[visitor].add(k)
    first = {v: min(ks) for v, ks in active.items()}
    reference = retention_by_cohort(first, active, max_weeks=weeks - 1)
    full = reports[(0, weeks - 1)].retention
    for cohort in reference:
        label = iso_week_label(week_index(W0) + cohort.cohort)
        assert full.sizes[label] == cohort.size
        assert full.cohorts[label] == pytest.approx(list(cohort.retention))


def _cx_snapshot(redis) -> dict[str, object]:  # noqa: ANN001
    out: dict[str, object] = {}
    for key in sorted(redis.scan_iter("vary:*")):
        if key.startswith("vary:cx:") or ":cx" in key:
            out[key] = redis.hgetall(key) if redis.type(key) == "hash" else sorted(redis.smembers(key))
    return out


def test_replay_changes_nothing(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    events: list[Event] = [*_activity_events()]
    events += [
        Survey(visitor_id="a", metric="nps", score=10, channel="ios", ts=W0 + 300),
        Survey(visitor_id="b", metric="csat", score=2, channel="web", ts=W0 + 300),
        Survey(visitor_id="c", metric="ces", score=3, channel="web", ts=W0 + WEEK + 300),
        Purchase(visitor_id="a", order_id="1", value=5.0, channel="ios", ts=W0 + 400),
        Purchase(visitor_id="a", order_id="2", value=5.0, channel="web", ts=W0 + 2 * WEEK + 400),
    ]
    exposures = [exposure("a", W0 + 50, segments={"loyal": 0.9}), exposure("b", W0 + 50, channel="ios")]

    async def body() -> tuple[CxReport, CxReport, dict, dict]:
        redis = Redis.from_url(redis_url)
        await push(redis, exposures, events)
        await drain(make_aggregator(redis))
        first = await report(redis)
        keys = _cx_snapshot(sync_redis)
        for stream in (EXPOSURE_STREAM, EVENT_STREAM):
            await redis.xgroup_setid(stream, "vary-aggregate", "0")
        again = make_aggregator(redis, consumer="c2")
        assert await drain(again) == len(events) + len(exposures)
        assert again.duplicates == len(events) + len(exposures) and again.processed == 0
        second = await report(redis)
        await redis.aclose()
        return first, second, keys, _cx_snapshot(sync_redis)

    first, second, keys_before, keys_after = _run(body())
    assert second == first and keys_after == keys_before
    assert first.by_segment["loyal"].nps.n == 1 and first.by_channel["ios"].nps.n == 1
    assert first.channel_switching.transitions  # a: web → ios → web


def test_events_from_the_recorder_and_empty_periods(redis_url: str) -> None:
    """Events stored by the real EventRecorder; a period without data gives empty metrics, not errors."""

    async def body() -> tuple[CxReport, CxReport, CxReport]:
        redis = Redis.from_url(redis_url)
        empty = await report(redis)
        await EventRecorder(redis).record([
            Survey(visitor_id="u", metric="nps", score=0, channel="email", ts=W0),
            Survey(visitor_id="u", metric="csat", score=5, ts=W0 + 1),  # no channel: the visitor's last one
        ])
        await drain(make_aggregator(redis))
        full = await report(redis)
        nothing = await report(redis, since=week_of(10), until=week_of(11))
        await redis.aclose()
        return empty, full, nothing

    empty, full, nothing = _run(body())
    assert empty.nps.n == 0 and empty.nps.score is None and empty.period.since is None
    assert empty.retention.cohorts == {} and empty.by_channel == {}
    assert full.nps.score == -100.0 and full.csat.score == 100.0
    assert full.by_channel["email"].csat.n == 1
    assert nothing.nps.n == 0 and nothing.retention.cohorts == {} and nothing.period.since == week_of(10)


def test_since_after_until_is_refused(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            with pytest.raises(ValueError, match="after until"):
                await report(redis, since=week_of(1), until=MONDAY)
        finally:
            await redis.aclose()

    _run(body())


def test_weekly_metrics_is_one_report_per_week_of_the_period_newest_weeks_last(redis_url: str) -> None:
    async def body() -> tuple[CxReport, list[tuple[str, CxReport]], list[tuple[str, CxReport]], list[CxReport]]:
        redis = Redis.from_url(redis_url)
        await push(redis, [], _activity_events())
        await drain(make_aggregator(redis))
        overall = await journey_metrics(redis, since=None, until=None, by="channel")
        weekly = await weekly_metrics(redis, overall.period)
        last_two = await weekly_metrics(redis, overall.period, weeks=2)
        singles = [await journey_metrics(redis, since=week_of(k), until=week_of(k), by="channel") for k in range(3)]
        await redis.aclose()
        return overall, weekly, last_two, singles

    overall, weekly, last_two, singles = _run(body())
    assert [label for label, _ in weekly] == [week_of(k).isoformat() for k in range(3)]
    assert [report for _, report in weekly] == singles
    assert last_two == weekly[1:]
    assert _run(weekly_metrics(Redis.from_url(redis_url), CxPeriod(since=None, until=None))) == []
    assert overall.period.since == MONDAY

