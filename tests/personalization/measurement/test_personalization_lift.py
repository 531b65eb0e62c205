"""Personalization lift: everyone treated vs the holdout, through the real aggregator on Valkey.

A seeded simulation plants a +25 % conversion lift for visitors outside the holdout; the results
must find it. The numbers are also checked to be exactly the stats / sequential functions applied
to the counts the simulation knows (so nothing is hard-coded), and comparisons against an empty
arm must be ``None`` with the reason in ``notes``.
"""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from personalization.measurement.events import Conversion, Event
from personalization.measurement.sequential import sequential_rates
from personalization.measurement.stats import (
    chance_to_beat_control,
    relative_uplift,
    two_proportion_p_value,
    wilson_interval,
)
from personalization.types import Experience, Exposure
from tests.personalization.measurement.test_aggregation import T0, exposure
from tests.personalization.measurement.test_results import aggregate_and_read

PLANTED_LIFT = 0.25
BASE_RATE = 0.20
HOLDOUT_SHARE = 0.3


def _experience(
    kind: str = "personalization", weights: tuple[float, ...] = (0.0, 1.0), holdout: float = HOLDOUT_SHARE,
    goals: tuple[str, ...] = ("purchase",), key: str = "hero",
) -> Experience:
    return Experience(
        id=f"id-{key}", key=key, name=key, type=kind,  # type: ignore[arg-type]
        variants=tuple(f"hero-v{i}" for i in range(1, len(weights))), weights=weights, holdout=holdout, goals=goals,
    )


def _simulate(seed: int, n: int) -> tuple[list[Exposure], list[Event], dict[str, tuple[int, int]]]:
    """Visitors split holdout / personalized (variant 1); converters drawn at BASE_RATE·(1 + lift if treated).

    Returns the records and the true (converters, visitors) per arm, as the simulation made them."""
    rng = np.random.default_rng(seed)
    in_holdout = rng.random(n) < HOLDOUT_SHARE
    rate = np.where(in_holdout, BASE_RATE, BASE_RATE * (1.0 + PLANTED_LIFT))
    converts = rng.random(n) < rate
    exposures, events = [], []
    for i in range(n):
        visitor = f"v{i}"
        # The holdout is served control (variant 0), flagged; the aggregator counts it as arm ``h``.
        exposures.append(exposure(visitor, 0 if in_holdout[i] else 1, T0 + i, holdout=bool(in_holdout[i])))
        if converts[i]:
            events.append(Conversion(visitor_id=visitor, goal="purchase", ts=T0 + i + 60))
    truth = {
        "holdout": (int((converts & in_holdout).sum()), int(in_holdout.sum())),
        "treated": (int((converts & ~in_holdout).sum()), int((~in_holdout).sum())),
    }
    return exposures, events, truth


def test_a_planted_lift_is_found(redis_url: str) -> None:
    exposures, events, truth = _simulate(seed=18, n=20_000)
    results = aggregate_and_read(redis_url, exposures, events, _experience())

    lift = results.personalization_lift["purchase"]
    (x_h, n_h), (x_t, n_t) = truth["holdout"], truth["treated"]
    assert (lift.holdout.visitors, lift.holdout.conversions) == (n_h, x_h) and results.holdout_visitors == n_h
    assert (lift.treated.visitors, lift.treated.conversions) == (n_t, x_t)
    assert lift.treated.rate == x_t / n_t and lift.treated.interval == wilson_interval(x_t, n_t)
    assert lift.holdout.rate == x_h / n_h and lift.holdout.interval == wilson_interval(x_h, n_h)

    # The estimates are the reference functions on those counts …
    expected_lift, expected_interval = relative_uplift(x_h, n_h, x_t, n_t)
    assert lift.lift == expected_lift and lift.lift_interval == expected_interval
    assert lift.p_value == two_proportion_p_value(x_h, n_h, x_t, n_t)
    assert lift.chance_to_beat_holdout == chance_to_beat_control(x_h, n_h, x_t, n_t)
    sequential = sequential_rates(x_h, n_h, x_t, n_t)
    assert sequential is not None
    assert lift.sequential_interval == sequential.interval and lift.sequential_p_value == sequential.p_value

    # … and they find the planted lift: both intervals exclude 0 and contain the truth.
    assert lift.lift == pytest.approx(PLANTED_LIFT, abs=0.1)
    for low, high in (lift.lift_interval, lift.sequential_interval):
        assert 0.0 < low < PLANTED_LIFT < high
    seq_low, seq_high = lift.sequential_interval
    assert seq_high - seq_low > lift.lift_interval[1] - lift.lift_interval[0]  # always-valid is wider
    assert lift.p_value < 1e-6 and lift.chance_to_beat_holdout > 0.999

    # A personalization experience serves nobody control: no verdict against it, and the note says why.
    control, personalized = results.goals["purchase"].variants
    assert control.visitors == 0 and personalized.visitors == n_t == personalized.exposures
    assert personalized.uplift is personalized.uplift_interval is None
    assert personalized.p_value is personalized.adjusted_p_value is personalized.chance_to_beat_control is None
    assert any(note.startswith("control has no visitors") and "personalization_lift" in note for note in results.notes)

    wire = msgspec.json.decode(msgspec.json.encode(results))
    assert set(wire["personalization_lift"]["purchase"]) >= {
        "treated", "holdout", "lift", "lift_interval", "p_value", "sequential_interval", "chance_to_beat_holdout"
    }
    assert set(wire["personalization_lift"]["purchase"]["treated"]) == {"visitors", "conversions", "rate", "interval"}


def test_treated_is_every_assigned_visitor_whatever_variant(redis_url: str) -> None:
    """Intent to treat: control, variant 1 and variant 2 visitors all count as treated; the holdout alone is not."""
    exposures, events = [], []
    arms = {"0": (300, 30), "1": (300, 45), "2": (300, 60), "h": (200, 20)}
    for arm, (n, x) in arms.items():
        for i in range(n):
            visitor = f"{arm}-{i}"
            exposures.append(exposure(visitor, 0 if arm == "h" else int(arm), T0 + i, holdout=arm == "h"))
            if i < x:
                events.append(Conversion(visitor_id=visitor, goal="signup", ts=T0 + i + 60))
    exp = _experience("ab_test", weights=(0.34, 0.33, 0.33), holdout=0.05, goals=("signup",))
    results = aggregate_and_read(redis_url, exposures, events, exp)

    lift = results.personalization_lift["signup"]
    assert (lift.treated.visitors, lift.treated.conversions) == (900, 135) == (sum(results.visitors), 135)
    assert (lift.holdout.visitors, lift.holdout.conversions) == (200, 20)
    assert (lift.lift, lift.lift_interval) == relative_uplift(20, 200, 135, 900)
    assert results.notes == []


def test_empty_holdout_and_no_holdout(redis_url: str) -> None:
    exposures = [exposure(f"v{i}", 1, T0 + i) for i in range(50)]
    events: list[Event] = [Conversion(visitor_id=f"v{i}", goal="purchase", ts=T0 + i + 60) for i in range(10)]
    results = aggregate_and_read(redis_url, exposures, events, _experience())
    lift = results.personalization_lift["purchase"]
    assert (lift.treated.visitors, lift.holdout.visitors) == (50, 0) and lift.holdout.rate is None
    assert lift.lift is lift.lift_interval is lift.p_value is None
    assert lift.sequential_interval is lift.chance_to_beat_holdout is None
    assert any(note.startswith("holdout has no visitors") for note in results.notes)

    without = aggregate_and_read(redis_url, [], [], _experience(holdout=0.0, key="no-traffic"))
    assert without.personalization_lift == {} and without.notes == []


def test_empty_variant_and_benjamini_hochberg_over_configured_goals(redis_url: str) -> None:
    """An empty variant gets no chance to beat control; BH covers variants × configured goals only."""
    exposures, events = [], []
    for arm, n, signups, buys in ((0, 400, 40, 20), (1, 400, 60, 30), (3, 400, 44, 31)):
        for i in range(n):
            visitor = f"{arm}-{i}"
            exposures.append(exposure(visitor, arm, T0 + i))
            if i < signups:
                events.append(Conversion(visitor_id=visitor, goal="signup", ts=T0 + i + 60))
            if i < buys:
                events.append(Conversion(visitor_id=visitor, goal="purchase", ts=T0 + i + 61))
            if i < 5:
                events.append(Conversion(visitor_id=visitor, goal="invented", ts=T0 + i + 62))
    exp = _experience("ab_test", weights=(0.25, 0.25, 0.25, 0.25), holdout=0.0, goals=("signup", "purchase"))
    results = aggregate_and_read(redis_url, exposures, events, exp, goals=("signup", "purchase", "invented"))

    empty = results.goals["signup"].variants[2]
    assert empty.visitors == 0 and empty.uplift is empty.p_value is empty.chance_to_beat_control is None
    assert results.notes == ["variant 2 has no visitors: it is not compared with control"]

    # Each comparable row carries the always-valid interval of its uplift, from the same counts.
    treated = results.goals["signup"].variants[1]
    sequential = sequential_rates(40, 400, 60, 400)
    assert sequential is not None and treated.sequential_interval == sequential.interval
    assert treated.sequential_p_value == sequential.p_value and empty.sequential_interval is None

    family = [results.goals[g].variants[v] for g in ("signup", "purchase") for v in (1, 3)]
    raw = [row.p_value for row in family]
    assert all(p is not None for p in raw)
    expected = multipletests(raw, method="fdr_bh")[1]
    assert [row.adjusted_p_value for row in family] == pytest.approx(list(expected), rel=1e-12)
    assert all(row.adjusted_p_value is None for row in results.goals["invented"].variants)
    assert all(row.visitors == row.exposures for g in results.goals.values() for row in g.variants)
    # Breakdowns are adjusted within their own family (here the one channel cell × configured goals ×
    # variants), never mixed with the totals' family; control and the empty variant are not tests.
    web = results.breakdowns["channel"]["web"]
    assert set(results.breakdowns["channel"]) == {"web"}
    cell = [web[g].variants[v] for g in ("signup", "purchase") for v in (1, 3)]
    expected_web = multipletests([row.p_value for row in cell], method="fdr_bh")[1]
    assert [row.adjusted_p_value for row in cell] == pytest.approx(list(expected_web), rel=1e-12)
    assert all(web[g].variants[v].adjusted_p_value is None for g in ("signup", "purchase") for v in (0, 2))
    assert all(row.adjusted_p_value is None for row in web["invented"].variants)
