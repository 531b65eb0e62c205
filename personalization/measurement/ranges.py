"""Date ranges over an experience's day aggregates, and times written as ISO 8601 UTC.

The aggregator keeps every experience's goal counters per UTC day as well as in total
(``vary:agg:{<x>}:day:<YYYY-MM-DD>``, :mod:`personalization.store.keys`), and the results already
read them into ``daily`` (:class:`~personalization.measurement.results.DayCounts`). So a date range
needs no new reads: :func:`range_counts` sums the days from ``since`` to ``until``.

What a range can and cannot say, because of what a day hash counts: *new* visitors by the day of
their first exposure, exposure entries by their day, conversion events by the event's day, and
*new* converters by the day of their first conversion. A range therefore reports the visitors who
entered in it and the conversions made in it — two populations that differ unless the range starts
at the experience's first day (a visitor who entered before ``since`` and converted inside it is a
converter of the range, not one of its visitors). So there is no rate, interval or p-value per
range; over all days the sums equal the totals. Value sums, CUPED sums, the holdout, UX and CX are
not kept per day and are not ranged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Protocol

from msgspec import Meta, Struct

from personalization.measurement.cx import parse_period

__all__ = ["DayTotals", "RangeCounts", "iso_utc", "range_counts", "range_of"]

RANGE_NOTE = (
    "visitors: new visitors whose first exposure was in the range; converters: visitors whose first "
    "conversion was in the range (they may have entered earlier); conversions: conversion events in "
    "the range. Not a rate: the two populations match only for a range from the first day."
)


def iso_utc(ts: float | None) -> str | None:
    """A Unix time as ISO 8601 UTC, ``2026-12-03T10:15:00Z`` (milliseconds when it has a fraction);
    ``None`` stays ``None``. The ``…_iso`` twin of an epoch field in a response."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, tz=UTC)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


class DayTotals(Protocol):
    """What :func:`range_counts` reads of a day (:class:`~personalization.measurement.results.DayCounts`)."""

    @property
    def visitors(self) -> list[int]: ...
    @property
    def exposures(self) -> list[int]: ...
    @property
    def converters(self) -> dict[str, list[int]]: ...
    @property
    def conversions(self) -> dict[str, list[int]]: ...


class RangeCounts(Struct, frozen=True, kw_only=True):
    """The day counts of ``since`` … ``until`` (ISO dates, both included; ``None``: open), summed;
    lists indexed by variant like ``daily``. ``days``: the days with data in the range."""

    since: Annotated[str, Meta(description="First day of the range (ISO date, included); null: open.")] | None
    until: Annotated[str, Meta(description="Last day of the range (ISO date, included); null: open.")] | None
    days: Annotated[list[str], Meta(description="The days with data in the range.")]
    visitors: Annotated[list[int], Meta(description="New visitors in the range, per variant.")]
    exposures: Annotated[list[int], Meta(description="Exposure entries in the range, per variant.")]
    converters: Annotated[
        dict[str, list[int]], Meta(description="Goal → visitors whose first conversion fell in the range, per variant.")
    ]
    conversions: Annotated[
        dict[str, list[int]], Meta(description="Goal → conversion events in the range, per variant.")
    ]
    note: Annotated[str, Meta(description="How to read range counts (daily sums, not a re-run of the analysis).")] = (
        RANGE_NOTE
    )


def _add(total: list[int], more: Sequence[int]) -> list[int]:
    if len(total) < len(more):
        total = total + [0] * (len(more) - len(total))
    return [t + (more[i] if i < len(more) else 0) for i, t in enumerate(total)]


def range_counts(daily: Mapping[str, DayTotals], since: date | None, until: date | None) -> RangeCounts:
    """Sum the days of ``daily`` (keyed ``YYYY-MM-DD``) from ``since`` to ``until``, both included.

    Dates come from :func:`~personalization.measurement.cx.parse_period` (which rejects since >
    until); a day key that is not a date is skipped."""
    days: list[str] = []
    visitors: list[int] = []
    exposures: list[int] = []
    converters: dict[str, list[int]] = {}
    conversions: dict[str, list[int]] = {}
    for name in sorted(daily):
        try:
            day = date.fromisoformat(name)
        except ValueError:
            continue
        if (since is not None and day < since) or (until is not None and day > until):
            continue
        counts = daily[name]
        days.append(name)
        visitors = _add(visitors, counts.visitors)
        exposures = _add(exposures, counts.exposures)
        for goal, per_variant in counts.converters.items():
            converters[goal] = _add(converters.get(goal, []), per_variant)
        for goal, per_variant in counts.conversions.items():
            conversions[goal] = _add(conversions.get(goal, []), per_variant)
    return RangeCounts(
        since=None if since is None else since.isoformat(),
        until=None if until is None else until.isoformat(),
        days=days, visitors=visitors, exposures=exposures, converters=converters, conversions=conversions,
    )


def range_of(daily: Mapping[str, DayTotals], since: str | None, until: str | None) -> RangeCounts | None:
    """The ``range`` block of results for the query values ``since`` / ``until`` (ISO dates, UTC);
    ``None`` when neither is given. A bad date or since after until raises
    :class:`~personalization.errors.InvalidPeriod` (a 400), as ``GET /v1/cx`` does."""
    if since is None and until is None:
        return None
    start, end = parse_period(since, until)
    return range_counts(daily, start, end)
