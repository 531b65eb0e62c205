"""Phases in the aggregates: a phase-2 exposure counts under ``<x>@p2``, with the experience's goals.

One hand-written sequence, run through the real scripts and through the Python reference; the
counters are checked against the values worked out by hand, so both are held to the rule and not
only to each other.
"""

from __future__ import annotations

from personalization.measurement.attribution import experience_of, exposure_record
from personalization.measurement.attribution_reference import aggregate, round_records
from personalization.measurement.events import Conversion, Event
from personalization.measurement.goals import GoalPolicy
from personalization.store.keys import agg_key
from personalization.types import Exposure, phase_key
from tests.personalization.measurement.test_attribution_reference import (
    WINDOWS,
    lua_counters,
)

T0 = 1_700_000_000.0
WINDOW = WINDOWS["hero"]  # 6 h
POLICY = GoalPolicy(by_experience={"hero": ("signup", "trial")}, default=("purchase",))


def _x(visitor: str, ts: float, variant: int, phase: int) -> Exposure:
    return Exposure(
        id=f"x-{visitor}-{ts}", ts=ts, visitor_id=visitor, session_id=None, channel="web",
        entry_id="hero-entry", variant_entry_id=f"hero-{variant}", experience="hero", variant=variant,
        is_control=variant == 0, holdout=False, propensity=0.5, phase=phase,
    )


def _conv(visitor: str, goal: str, ts: float) -> Event:
    return Conversion(visitor_id=visitor, goal=goal, ts=ts, event_id=f"{visitor}-{goal}-{ts}")


def plan() -> list[tuple[list[Exposure], list[Event]]]:
    exposures = [
        _x("a", T0, 1, 1),  # a: phase 1 (variant 1), then phase 2 (variant 0)
        _x("a", T0 + 100, 0, 2),
        _x("b", T0 + 50, 1, 2),  # b: phase 2 only
        _x("c", T0, 0, 1),  # c: phase 1 only
    ]
    events = [
        _conv("a", "signup", T0 + 200),  # inside both of a's windows: counts in phase 1 and 2
        _conv("b", "trial", T0 + 60),  # hero's own goal: counts for its phase 2
        _conv("b", "purchase", T0 + 70),  # the space default, not hero's goal: discarded in phase 2
        _conv("a", "trial", T0 + WINDOW + 50),  # after phase 1's window, inside phase 2's
        _conv("c", "signup", T0 + WINDOW + 1),  # after c's window: counts nowhere
    ]
    return [(exposures, events)]


def test_phase_key_round_trip() -> None:
    assert experience_of(phase_key("hero", 2)) == "hero" and phase_key("hero", 1) == "hero"
    assert experience_of("hero@p12") == "hero" and experience_of("a@p2@p3") == "a@p2"
    assert experience_of("hero@px") == "hero@px" and experience_of("hero@p") == "hero@p"
    assert exposure_record(_x("a", T0, 1, 3), 60.0)[4] == "hero@p3"
    assert exposure_record(_x("a", T0, 1, 1), 60.0)[4] == "hero"


def test_phases_split_the_aggregates(redis_url: str, sync_redis) -> None:
    p1, p2 = agg_key("hero", "all"), agg_key(phase_key("hero", 2), "all")
    expected = {
        p1: {"1:exposures": 1, "0:exposures": 1, "1:visitors": 1, "0:visitors": 1,
             "1:events:signup": 1, "1:conv:signup": 1},
        p2: {"0:exposures": 1, "1:exposures": 1, "0:visitors": 1, "1:visitors": 1,
             "0:events:signup": 1, "0:conv:signup": 1, "1:events:trial": 1, "1:conv:trial": 1,
             "0:events:trial": 1, "0:conv:trial": 1, "discarded:goal": 1},
    }
    reference = aggregate([r for xs, es in plan() for r in round_records(xs, es, WINDOWS)], POLICY)
    actual = lua_counters(redis_url, sync_redis, plan(), POLICY)
    for counters in (reference, actual):
        assert {key: counters[key] for key in expected} == expected
        assert set(counters) == {
            agg_key(name, dim) for name in ("hero", "hero@p2")
            for dim in ("all", "ch:web", "seg:none", "day:2023-11-14", "day:2023-11-15")
        } - {agg_key("hero", "day:2023-11-15")}  # only phase 2 counts an event of the next day
    assert actual == reference
