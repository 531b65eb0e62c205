"""Conversion covariates (CUPED on conversions) and returning visitors, worked out by hand.

A hand-written sequence runs through the real scripts and through the Python reference; the
``all`` hash is checked against the values below, so both are held to the rule itself.
"""

from __future__ import annotations

from personalization.measurement.attribution import MAX_PRE_EXPOSURE_CONVERSIONS
from personalization.measurement.attribution_reference import aggregate, round_records
from personalization.measurement.events import Conversion, Event
from personalization.store.keys import agg_key
from personalization.types import Exposure
from tests.personalization.measurement.test_attribution_reference import (
    WINDOWS,
    lua_counters,
)

T0 = 1_700_000_000.0  # 22:13 UTC: T0 + 6000 s is the next UTC day
DAY = 86_400.0


def _x(visitor: str, ts: float, variant: int) -> Exposure:
    return Exposure(
        id=f"x-{visitor}-{ts}", ts=ts, visitor_id=visitor, session_id=None, channel="web",
        entry_id="hero-entry", variant_entry_id=f"hero-{variant}", experience="hero", variant=variant,
        is_control=variant == 0, holdout=False, propensity=0.5,
    )


def _conv(visitor: str, goal: str, ts: float) -> Event:
    return Conversion(visitor_id=visitor, goal=goal, ts=ts, event_id=f"{visitor}-{goal}-{ts}")


def plan() -> list[tuple[list[Exposure], list[Event]]]:
    flood = [_conv("c", "trial", T0 - 5000 + i) for i in range(MAX_PRE_EXPOSURE_CONVERSIONS + 1)]
    return [
        # Round 1: conversions before any exposure (a: 2 signups; c: more trials than the cap).
        ([], [_conv("a", "signup", T0 - 1000), _conv("a", "signup", T0 - 900), *flood]),
        # Round 2: first exposures; a converts (Y = 1), then a pre-exposure signup arrives late.
        ([_x("a", T0, 1), _x("b", T0 + 5, 1), _x("c", T0, 0)],
         [_conv("a", "signup", T0 + 10), _conv("b", "signup", T0 + 20), _conv("a", "signup", T0 - 500),
          _conv("c", "trial", T0 - 50)]),
        # Round 3: a returns on the next day (twice: counted once); b was also seen the day before
        # (a late, earlier exposure) and again on the first day.
        ([_x("a", T0 + DAY, 0), _x("a", T0 + 2 * DAY, 1), _x("b", T0 - DAY, 1), _x("b", T0 + 6, 1)], []),
    ]


def test_conversion_covariates_and_returning(redis_url: str, sync_redis) -> None:
    cap = MAX_PRE_EXPOSURE_CONVERSIONS
    expected = {
        # exposures count under the variant each one names; visitors under their first (sticky)
        "1:exposures": 5, "1:visitors": 2, "0:exposures": 2, "0:visitors": 1, "variant_conflicts": 1,
        "1:events:signup": 2, "1:conv:signup": 2,
        # a: X = 2 at the exposure, then 3 (the late one); Y = 1. b: X = 0.
        "1:xcsum:signup": 3, "1:xcsumsq:signup": 9, "1:xcysum:signup": 3,
        # c: X capped; the late pre-exposure trial does not move it past the cap.
        "0:xcsum:trial": cap, "0:xcsumsq:trial": cap * cap,
        "1:returning": 2,
    }
    reference = aggregate([r for xs, es in plan() for r in round_records(xs, es, WINDOWS)])
    actual = lua_counters(redis_url, sync_redis, plan(), None)
    everyone = agg_key("hero", "all")
    assert reference[everyone] == expected
    assert actual == reference
