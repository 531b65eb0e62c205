"""Journey (CX) metrics across all channels for a period: ``GET /v1/cx``.

The counters come from :mod:`personalization.measurement.aggregation` (the "Journey (CX)
aggregates" section of :mod:`personalization.measurement.attribution` says how they stay exact for
distinct visitors over any range of weeks); this module only reads
them — two pipelined round trips, whatever the period — and maps them onto
:mod:`personalization.measurement.ux_cx`, so every formula is the one the experiment results use:

* NPS, CSAT (percent), CES — :func:`~personalization.measurement.ux_cx.nps_from_histogram`,
  :func:`~personalization.measurement.ux_cx.csat_from_histogram`, :func:`~personalization.measurement.ux_cx.ces_from_histogram`
  over the survey histograms of the period's weeks (responses, so weeks simply add up);
* repeat-purchase rate — :func:`~personalization.measurement.ux_cx.repeat_purchase_rate`: customers with ≥ 2
  orders in the period / customers with ≥ 1 in the period;
* channel switching — the Wilson share ``ux_cx`` uses for ``multi_channel``: visitors seen on ≥ 2
  channels in the period / visitors active in the period; and the most frequent transitions;
* retention — the definition of :func:`~personalization.measurement.ux_cx.retention_by_cohort` (cohort = week
  first seen, retention(k) = share of the cohort active k weeks on, churn = 1 − retention at the end
  of the period), computed from per-cohort counters because the per-visitor maps that function
  takes would mean reading every visitor.

Periods are whole UTC ISO weeks: ``since`` and ``until`` select the weeks that contain them, and the
report says which dates that covers. Retention is shown up to the period's last week (never past the
current week: weeks that have not happened are left out, not reported as 0). Breakdowns: the channel
of the event (surveys, orders) and the top segment of the visitor's first exposure.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Annotated, Literal

from msgspec import Meta, Struct, field
from redis.asyncio import Redis

from personalization.errors import InvalidPeriod
from personalization.measurement import ux_cx
from personalization.measurement.attribution import week_index
from personalization.measurement.ux_cx import (
    MetricEstimate,
    ces_from_histogram,
    csat_from_histogram,
    nps_from_histogram,
    repeat_purchase_rate,
)
from personalization.store.keys import CX_DIMS_KEY, CX_WEEKS_KEY, cx_key

__all__ = [
    "Breakdown",
    "CxBlock",
    "CxPeriod",
    "CxReport",
    "CxRetention",
    "CxTransition",
    "CxChannelSwitching",
    "TOP_TRANSITIONS",
    "WEEKS_OVER_TIME",
    "journey_metrics",
    "weekly_metrics",
    "parse_period",
    "iso_week_label",
    "week_monday",
]

Breakdown = Literal["all", "channel", "segment"]

#: How many channel transitions the report lists (most frequent first).
TOP_TRANSITIONS = 10
#: Most weeks :func:`weekly_metrics` reports (each is one small read of the weekly counters).
WEEKS_OVER_TIME = 12

_EPOCH = date(1970, 1, 1)
_SURVEYS = ("nps", "csat", "ces")


class CxBlock(Struct, frozen=True, kw_only=True):
    """The per-population metrics: overall, per channel, per segment."""

    nps: Annotated[MetricEstimate, Meta(description="Net Promoter Score (−100 to 100) with its interval.")]
    csat: Annotated[
        MetricEstimate, Meta(description="Customer satisfaction: percent of 4 and 5 answers on the 1–5 scale.")
    ]
    ces: Annotated[MetricEstimate, Meta(description="Mean Customer Effort Score (1–7).")]
    repeat_purchase_rate: Annotated[
        MetricEstimate, Meta(description="Share of buyers who bought more than once in the period.")
    ]


class CxRetention(Struct, frozen=True, kw_only=True):
    """Per weekly cohort (``2023-W46``, oldest first): ``cohorts`` the shares active 0, 1, … weeks
    after (index 0 is 1.0), ``sizes`` the visitors first seen that week, ``churn`` 1 − the share at
    the period's last week (``None`` for a cohort that starts in it)."""

    cohorts: Annotated[
        dict[str, list[float]],
        Meta(description="Weekly cohort (`2026-W46`) → share active 0, 1, … weeks after (index 0 is 1.0)."),
    ]
    sizes: Annotated[dict[str, int], Meta(description="Weekly cohort → visitors first seen that week.")]
    churn: Annotated[
        dict[str, float | None],
        Meta(
            description="Weekly cohort → 1 − the share at the period's last week; null for a cohort that starts in it."
        ),
    ]


class CxTransition(Struct, frozen=True, kw_only=True):
    """Consecutive events of one visitor on channel ``from`` then ``to``, counted ``count`` times."""

    from_: Annotated[str, Meta(description="The channel of the earlier event.")] = field(name="from")
    to: Annotated[str, Meta(description="The channel of the next event.")]
    count: Annotated[int, Meta(description="How many times a visitor moved from `from` to `to`.")]


class CxChannelSwitching(Struct, frozen=True, kw_only=True):
    """``share``: visitors seen on ≥ 2 channels in the period / visitors active in it (Wilson)."""

    share: Annotated[
        MetricEstimate,
        Meta(description="Visitors seen on ≥ 2 channels / visitors active in the period (Wilson interval)."),
    ]
    transitions: Annotated[
        list[CxTransition], Meta(description="Channel-to-channel moves of the same visitor, counted.")
    ]


class CxPeriod(Struct, frozen=True, kw_only=True):
    """The dates covered: Monday of the first week to Sunday of the last (``None`` without data)."""

    since: Annotated[date, Meta(description="Monday of the first week covered; null without data.")] | None
    until: Annotated[date, Meta(description="Sunday of the last week covered; null without data.")] | None


class CxReport(Struct, frozen=True, kw_only=True):
    """Everything ``GET /v1/cx`` returns."""

    period: Annotated[CxPeriod, Meta(description="The dates covered.")]
    nps: Annotated[MetricEstimate, Meta(description="Net Promoter Score over everyone.")]
    csat: Annotated[MetricEstimate, Meta(description="Customer satisfaction over everyone.")]
    ces: Annotated[MetricEstimate, Meta(description="Customer Effort Score over everyone.")]
    repeat_purchase_rate: Annotated[MetricEstimate, Meta(description="Share of buyers who bought more than once.")]
    retention: Annotated[CxRetention, Meta(description="Weekly cohort retention and churn.")]
    channel_switching: Annotated[
        CxChannelSwitching, Meta(description="How many visitors use more than one channel, and how they move.")
    ]
    by_channel: Annotated[
        dict[str, CxBlock], Meta(description="Channel → the same metrics for that channel's visitors.")
    ]
    by_segment: Annotated[
        dict[str, CxBlock], Meta(description="Segment → the same metrics for that segment's visitors.")
    ]


def parse_period(since: str | None, until: str | None) -> tuple[date | None, date | None]:
    """``since`` / ``until`` query values as dates; :class:`~personalization.errors.InvalidPeriod`
    (a ``ValueError``) names the bad parameter, and says so when since is after until."""
    dates: list[date | None] = []
    for name, text in (("since", since), ("until", until)):
        try:
            dates.append(None if text is None else date.fromisoformat(text.strip()))
        except ValueError:
            raise InvalidPeriod(f"{name}: expected an ISO date (YYYY-MM-DD), got {text!r}") from None
    start, end = dates
    if start is not None and end is not None and start > end:
        raise InvalidPeriod(f"since ({start}) must not be after until ({end})")
    return start, end


def week_monday(week: int) -> date:
    """The Monday that starts week number ``week`` (:func:`~personalization.measurement.attribution.week_index`)."""
    return _EPOCH + timedelta(days=7 * week - 3)


def _week_sunday(week: int) -> date:
    """The last day of a week (``date.max`` for the week that holds it: 9999-12-31 is a Friday)."""
    monday = week_monday(week)
    return monday + timedelta(days=min(6, (date.max - monday).days))


def iso_week_label(week: int) -> str:
    """``2023-W46`` for a week number."""
    year, number, _ = week_monday(week).isocalendar()
    return f"{year}-W{number:02d}"


def _date_week(day: date) -> int:
    return ((day - _EPOCH).days + 3) // 7


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(raw: Mapping[bytes | str, bytes | str]) -> dict[str, int]:
    return {_text(k): int(_text(v)) for k, v in raw.items()}


def _before(prev: str, a: int) -> bool:
    """A ``<previous week>`` field part: ``-`` (none) or a week before ``a``."""
    return prev == "-" or int(prev) < a


def _distinct(hashes: Iterable[dict[str, int]], prefix: str, a: int) -> int:
    """Visitors with a term ``<prefix>:<p>`` in the range whose previous week p is before it."""
    total = 0
    for counts in hashes:
        for name, count in counts.items():
            kind, _, prev = name.partition(":")
            if kind == prefix and _before(prev, a):
                total += count
    return total


def _pairs(hashes: Iterable[dict[str, int]], prefix: str, a: int, b: int) -> int:
    """Visitors whose first minimal interval starting in [a, b] (``<prefix>:<y>:<px>``) ends by b."""
    total = 0
    for counts in hashes:
        for name, count in counts.items():
            kind, _, rest = name.partition(":")
            if kind != prefix:
                continue
            y, _, px = rest.partition(":")
            if int(y) <= b and _before(px, a):
                total += count
    return total


def _histogram(hashes: Iterable[dict[str, int]], metric: str) -> dict[int, int]:
    hist: Counter[int] = Counter()
    for counts in hashes:
        for name, count in counts.items():
            kind, _, score = name.partition(":")
            if kind == metric and count:
                hist[int(score)] += count
    return dict(hist)


def _block(hashes: list[dict[str, int]], a: int, b: int) -> CxBlock:
    buyers = _distinct(hashes, "buy", a)
    repeat = _pairs(hashes, "rep", a, b)
    return CxBlock(
        nps=nps_from_histogram(_histogram(hashes, "nps")),
        csat=csat_from_histogram(_histogram(hashes, "csat")),
        ces=ces_from_histogram(_histogram(hashes, "ces")),
        repeat_purchase_rate=repeat_purchase_rate(min(repeat, buyers), buyers),
    )


def _retention(overall: Mapping[int, dict[str, int]], end: int) -> CxRetention:
    """Shares from the cohort counters ``ret:<k>`` (``ret:0`` = size), as
    :func:`~personalization.measurement.ux_cx.retention_by_cohort` defines them, up to week ``end``."""
    cohorts: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    churn: dict[str, float | None] = {}
    for week in sorted(overall):
        counts = overall[week]
        size = counts.get("ret:0", 0)
        if size <= 0 or week > end:
            continue
        label = iso_week_label(week)
        shares = [counts.get(f"ret:{k}", 0) / size for k in range(end - week + 1)]
        cohorts[label], sizes[label] = shares, size
        churn[label] = 1.0 - shares[-1] if len(shares) > 1 else None
    return CxRetention(cohorts=cohorts, sizes=sizes, churn=churn)


def _transitions(hashes: Iterable[dict[str, int]]) -> list[CxTransition]:
    found: Counter[tuple[str, str]] = Counter()
    for counts in hashes:
        for name, count in counts.items():
            kind, _, pair = name.partition(":")
            if kind == "tr" and count:
                source, _, target = pair.partition(">")
                found[(source, target)] += count
    ranked = sorted(found.items(), key=lambda item: (-item[1], item[0]))[:TOP_TRANSITIONS]
    return [CxTransition(from_=a, to=b, count=c) for (a, b), c in ranked]


async def journey_metrics(
    redis: Redis,
    *,
    since: date | None,
    until: date | None,
    by: Breakdown = "all",
    now: float | None = None,
) -> CxReport:
    """NPS, CSAT, CES, repeat-purchase rate, retention by weekly cohort and channel switching for the
    weeks containing ``since`` … ``until`` (open ends: the first / last week with data).

    ``by`` picks the breakdowns filled in: ``"all"`` both ``by_channel`` and ``by_segment``,
    ``"channel"`` or ``"segment"`` only that one (the other comes back empty). ``now`` (Unix
    seconds, default the clock) bounds retention: weeks after the current one are left out.
    """
    if since is not None and until is not None and since > until:
        raise ValueError(f"since ({since}) is after until ({until})")
    pipe = redis.pipeline(transaction=False)
    pipe.smembers(CX_WEEKS_KEY)
    pipe.smembers(CX_DIMS_KEY)
    raw_weeks, raw_dims = await pipe.execute()
    data_weeks = sorted(int(_text(w)) for w in raw_weeks)
    first = _date_week(since) if since is not None else (data_weeks[0] if data_weeks else None)
    last = _date_week(until) if until is not None else (data_weeks[-1] if data_weeks else None)
    if first is None or last is None:  # no data and at most one end given: a one-week (or empty) period
        first = last = first if first is not None else last
    if first is not None and last is not None and last < first:  # open end before the given one
        last = first
    a, b = (first, last) if first is not None and last is not None else (0, -1)
    weeks = [w for w in data_weeks if a <= w <= b]
    wanted = {"all": ("ch:", "seg:"), "channel": ("ch:",), "segment": ("seg:",)}[by]
    dims = sorted(d for d in map(_text, raw_dims) if d.startswith(wanted))
    pipe = redis.pipeline(transaction=False)
    for dim in ("all", *dims):
        for week in weeks:
            pipe.hgetall(cx_key(week, dim))
    replies = iter(await pipe.execute())
    per_dim = {dim: {week: _fields(next(replies)) for week in weeks} for dim in ("all", *dims)}
    dims = [d for d in dims if any(per_dim[d].values())]  # only populations with data in the period

    overall = per_dim["all"]
    hashes = list(overall.values())
    block = _block(hashes, a, b)
    active = _distinct(hashes, "act", a)
    multi = _pairs(hashes, "multi", a, b)
    current = week_index(time.time() if now is None else now)
    return CxReport(
        period=CxPeriod(
            since=week_monday(a) if a <= b else None,
            until=_week_sunday(b) if a <= b else None,
        ),
        nps=block.nps,
        csat=block.csat,
        ces=block.ces,
        repeat_purchase_rate=block.repeat_purchase_rate,
        retention=_retention(overall, min(b, current)),
        channel_switching=CxChannelSwitching(
            # The Wilson share ux_cx.channel_switching reports as multi_channel, from counts.
            share=ux_cx._rate(min(multi, active), active),  # noqa: SLF001
            transitions=_transitions(hashes),
        ),
        by_channel={
            d.removeprefix("ch:"): _block(list(per_dim[d].values()), a, b) for d in dims if d.startswith("ch:")
        },
        by_segment={
            d.removeprefix("seg:"): _block(list(per_dim[d].values()), a, b) for d in dims if d.startswith("seg:")
        },
    )


async def weekly_metrics(
    redis: Redis, period: CxPeriod, *, weeks: int = WEEKS_OVER_TIME, by: Breakdown = "channel"
) -> list[tuple[str, CxReport]]:
    """One report per ISO week for the last ``weeks`` weeks of ``period`` (a report's ``period``),
    oldest first, each with its Monday as an ISO date: CX over time. Empty for a period without data."""
    if period.since is None or period.until is None:
        return []
    last = _date_week(period.until)
    numbers = list(range(max(_date_week(period.since), last - weeks + 1), last + 1))
    reports = await asyncio.gather(
        *(journey_metrics(redis, since=week_monday(w), until=week_monday(w), by=by) for w in numbers)
    )
    return [(week_monday(w).isoformat(), report) for w, report in zip(numbers, reports, strict=True)]
