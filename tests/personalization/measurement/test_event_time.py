"""Event ``ts``: epoch seconds or an ISO 8601 time with an offset, always a float after decoding."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from personalization.measurement.events import (
    EVENT_DECODER,
    EVENT_ENCODER,
    Click,
    Conversion,
    decode_events,
)

NOON_UTC = datetime(2026, 12, 3, 10, 15, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-12-03T10:15:00Z", NOON_UTC),
        ("2026-12-03T10:15:00+00:00", NOON_UTC),
        ("2026-12-03T11:15:00+01:00", NOON_UTC),
        ("2026-12-03T05:15:00-05:00", NOON_UTC),
        ("2026-12-03T10:15:00.250Z", NOON_UTC + 0.25),
        ("2026-12-03T10:15:00.000001Z", NOON_UTC + 1e-6),
        (NOON_UTC, NOON_UTC),
        (int(NOON_UTC), NOON_UTC),
        (0, 0.0),
    ],
)
def test_iso_and_epoch_times_decode_to_epoch_seconds(raw: object, expected: float) -> None:
    good, errors = decode_events([{"type": "conversion", "visitor_id": "v", "goal": "g", "ts": raw}])
    assert errors == []
    ((_, event),) = good
    assert isinstance(event.ts, float) and event.ts == pytest.approx(expected, abs=1e-6)
    # The same through the stream's JSON decoder, and what is written back is a plain number.
    decoded = EVENT_DECODER.decode(msgspec.json.encode({"type": "click", "visitor_id": "v", "ts": raw}))
    assert isinstance(decoded.ts, float) and decoded.ts == pytest.approx(expected, abs=1e-6)
    assert msgspec.json.decode(EVENT_ENCODER.encode(decoded))["ts"] == decoded.ts


def test_constructing_with_a_datetime_normalises_too() -> None:
    when = datetime(2026, 12, 3, 11, 15, tzinfo=UTC)
    assert Click(visitor_id="v", ts=when).ts == when.timestamp()  # type: ignore[arg-type]
    assert msgspec.structs.replace(Conversion(visitor_id="v", goal="g"), ts=when).ts == when.timestamp()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("2026-12-03T10:15:00", "timezone"),  # no offset: ambiguous
        ("yesterday", "RFC3339"),
        ("2026-13-03T10:15:00Z", "RFC3339"),
        ("", "RFC3339"),
        ("1700000000", "RFC3339"),  # a number in a string is not a time
        ("1969-12-31T23:59:59Z", "1970"),
        ("2100-01-01T00:00:00Z", "2096"),
        (-1, ">= 0"),
        (5e9, "<="),
        (True, "float | datetime | null"),
        ([2026, 12, 3], "float | datetime | null"),
    ],
)
def test_a_bad_time_rejects_its_event_naming_ts(raw: object, says: str) -> None:
    good, errors = decode_events([
        {"type": "page_view", "visitor_id": "v"},
        {"type": "page_view", "visitor_id": "v", "ts": raw},
    ])
    assert [i for i, _ in good] == [0]
    (error,) = errors
    assert (error.index, error.field) == (1, "ts") and says in error.message, error
