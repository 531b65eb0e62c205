"""Date ranges over the results' day counts, and ISO 8601 UTC twins of epoch times."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from personalization.errors import InvalidPeriod
from personalization.measurement.ranges import iso_utc, range_counts, range_of
from personalization.measurement.results import DayCounts


def _days(seed: int, n: int = 10, variants: int = 3) -> dict[str, DayCounts]:
    rng = random.Random(seed)
    start = date(2026, 11, 25)
    out = {}
    for i in range(n):
        def row() -> list[int]:
            return [rng.randrange(50) for _ in range(variants)]
        out[(start + timedelta(days=i)).isoformat()] = DayCounts(
            visitors=row(), exposures=row(),
            converters={"signup": row(), "purchase": row()}, conversions={"signup": row(), "purchase": row()},
        )
    return out


def test_a_range_sums_exactly_its_days_and_all_days_are_the_totals() -> None:
    daily = _days(3)
    names = sorted(daily)
    ranged = range_counts(daily, date.fromisoformat(names[2]), date.fromisoformat(names[5]))
    assert ranged.days == names[2:6] and (ranged.since, ranged.until) == (names[2], names[5])
    inside = [daily[d] for d in names[2:6]]
    assert ranged.visitors == [sum(d.visitors[v] for d in inside) for v in range(3)]
    assert ranged.exposures == [sum(d.exposures[v] for d in inside) for v in range(3)]
    for goal in ("signup", "purchase"):
        assert ranged.converters[goal] == [sum(d.converters[goal][v] for d in inside) for v in range(3)]
        assert ranged.conversions[goal] == [sum(d.conversions[goal][v] for d in inside) for v in range(3)]
    whole = range_counts(daily, None, None)
    assert whole.days == names and whole.visitors == [sum(d.visitors[v] for d in daily.values()) for v in range(3)]
    # Splitting a range in two adds up to the range.
    left = range_counts(daily, None, date.fromisoformat(names[4]))
    right = range_counts(daily, date.fromisoformat(names[5]), None)
    assert [a + b for a, b in zip(left.visitors, right.visitors)] == whole.visitors
    assert "Not a rate" in whole.note


def test_empty_ranges_and_odd_keys() -> None:
    daily = _days(4, n=3)
    daily["not-a-day"] = next(iter(daily.values()))
    ranged = range_counts(daily, date(2030, 1, 1), None)
    assert ranged.days == [] and ranged.visitors == [] and ranged.converters == {}
    assert len(range_counts(daily, None, None).days) == 3


def test_days_with_more_variants_later_are_padded() -> None:
    daily = {
        "2026-12-01": DayCounts(visitors=[1, 2], exposures=[1, 2], converters={}, conversions={}),
        "2026-12-02": DayCounts(visitors=[1, 2, 3], exposures=[1, 2, 3], converters={"g": [0, 0, 1]}, conversions={}),
    }
    assert range_counts(daily, None, None).visitors == [2, 4, 3]


def test_range_of_query_values() -> None:
    daily = _days(5, n=4)
    names = sorted(daily)
    assert range_of(daily, None, None) is None
    ranged = range_of(daily, names[1], names[1])
    assert ranged is not None and ranged.days == [names[1]] and ranged.visitors == daily[names[1]].visitors
    with pytest.raises(InvalidPeriod, match="since"):
        range_of(daily, "last week", None)
    with pytest.raises(InvalidPeriod, match="after"):
        range_of(daily, names[2], names[0])


@pytest.mark.parametrize(
    ("ts", "iso"),
    [
        (0.0, "1970-01-01T00:00:00Z"),
        (datetime(2026, 12, 3, 10, 15, tzinfo=UTC).timestamp(), "2026-12-03T10:15:00Z"),
        (datetime(2026, 12, 3, 10, 15, tzinfo=UTC).timestamp() + 0.25, "2026-12-03T10:15:00.250Z"),
        (None, None),
    ],
)
def test_iso_utc(ts: float | None, iso: str | None) -> None:
    assert iso_utc(ts) == iso
    if iso is not None and ts is not None:
        assert datetime.fromisoformat(iso).timestamp() == ts
