"""Revenue per currency: ISO 4217 codes only, and exact per-arm sums of per-visitor R, O, R², O², R·O.

The aggregates are worked out by hand for one sequence and checked on the real scripts and on the
Python reference; the random sequences of ``test_attribution_reference`` cover the rest.
"""

from __future__ import annotations

import pytest

from personalization.measurement.attribution import event_record
from personalization.measurement.attribution_reference import aggregate, round_records
from personalization.measurement.currencies import ISO_4217, NO_CURRENCY
from personalization.measurement.events import Event, Purchase, decode_events
from personalization.store.keys import agg_key
from personalization.types import Exposure
from tests.personalization.measurement.test_attribution_reference import (
    WINDOWS,
    lua_counters,
)

T0 = 1_700_000_000.0


def test_the_code_list() -> None:
    assert len(ISO_4217) == 178 and {"EUR", "USD", "JPY", "CHF", "XCG", "ZWG", NO_CURRENCY} <= ISO_4217
    assert all(len(code) == 3 and code.isascii() and code.isupper() for code in ISO_4217)
    assert not {"ANG", "ZWL", "HRK", "EUE", "ABC"} & ISO_4217  # withdrawn or never codes


@pytest.mark.parametrize("currency", ["ABC", "EUE", "eur", "EURO", "", 978])
def test_an_unknown_currency_rejects_the_event_naming_the_field(currency: object) -> None:
    raw = {"type": "purchase", "visitor_id": "a", "order_id": "o1", "value": 5, "currency": currency}
    good, errors = decode_events([raw, {**raw, "currency": "EUR"}, {k: v for k, v in raw.items() if k != "currency"}])
    assert [index for index, _ in good] == [1, 2]
    assert [(e.index, e.field) for e in errors] == [(0, "currency")]
    with pytest.raises(ValueError, match="ISO 4217"):
        Purchase(visitor_id="a", order_id="o1", value=5.0, currency="ABC")


def test_a_purchase_without_currency_counts_under_xxx() -> None:
    record = event_record(Purchase(visitor_id="a", order_id="o1", value=5.0, ts=T0), "1-0")
    assert record[10:12] == ["o1", "XXX"]
    assert event_record(Purchase(visitor_id="a", order_id="o1", value=5.0, currency="JPY", ts=T0), "1-0")[11] == "JPY"


def _x(visitor: str, ts: float) -> Exposure:
    return Exposure(
        id=f"x-{visitor}", ts=ts, visitor_id=visitor, session_id=None, channel="web", entry_id="hero-entry",
        variant_entry_id="hero-1", experience="hero", variant=1, is_control=False, holdout=False, propensity=0.5,
    )


def _buy(visitor: str, order: str, value: float, currency: str | None, ts: float) -> Event:
    return Purchase(visitor_id=visitor, order_id=order, value=value, currency=currency, ts=ts, event_id=f"{order}-{ts}")


def test_per_currency_sums(redis_url: str, sync_redis) -> None:
    plan = [(
        [_x("a", T0), _x("b", T0 + 1)],
        [_buy("a", "o1", 10.0, "EUR", T0 + 10), _buy("a", "o2", 5.0, "EUR", T0 + 20),
         _buy("a", "o3", 7.0, "USD", T0 + 30), _buy("a", "o4", 3.0, None, T0 + 40),
         _buy("a", "o1", 10.0, "EUR", T0 + 50),  # the same order again: counted once
         _buy("b", "o1", 4.0, "EUR", T0 + 60)],
    )]
    # a: EUR R = 15, O = 2; USD 7, 1; XXX 3, 1. b: EUR 4, 1.
    expected = {
        "1:cur:EUR:orders": 3, "1:cur:EUR:revenue": 19, "1:cur:EUR:buyers": 2,
        "1:cur:EUR:rsq": 15**2 + 4**2, "1:cur:EUR:osq": 2**2 + 1, "1:cur:EUR:ro": 15 * 2 + 4 * 1,
        "1:cur:USD:orders": 1, "1:cur:USD:revenue": 7, "1:cur:USD:buyers": 1,
        "1:cur:USD:rsq": 49, "1:cur:USD:osq": 1, "1:cur:USD:ro": 7,
        "1:cur:XXX:orders": 1, "1:cur:XXX:revenue": 3, "1:cur:XXX:buyers": 1,
        "1:cur:XXX:rsq": 9, "1:cur:XXX:osq": 1, "1:cur:XXX:ro": 3,
    }
    reference = aggregate([r for xs, es in plan for r in round_records(xs, es, WINDOWS)])
    actual = lua_counters(redis_url, sync_redis, plan, None)
    everyone = agg_key("hero", "all")
    for counters in (reference, actual):
        assert {k: v for k, v in counters[everyone].items() if ":cur:" in k} == expected
        assert counters[everyone]["1:buyers"] == 2 and counters[everyone]["1:repeat_buyers"] == 1
    assert actual == reference
