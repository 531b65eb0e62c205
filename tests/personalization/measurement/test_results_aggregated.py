"""CUPED on conversions and value per currency through the real aggregator: the results equal the
statistics applied to what the seeded simulation knows about each visitor."""

from __future__ import annotations

import numpy as np
import pytest

from personalization.measurement.events import Conversion, Event, Purchase
from personalization.measurement.regression_adjustment import adjust_rates
from personalization.measurement.results_value import ratio_delta
from personalization.measurement.stats import CupedSums
from personalization.types import Exposure
from tests.personalization.measurement.test_aggregation import T0, exposure
from tests.personalization.measurement.test_results import (
    aggregate_and_read,
    experience,
)

N = 400  # visitors per arm


def _simulate(seed: int) -> tuple[list[Exposure], list[Event], list[Event], dict]:
    rng = np.random.default_rng(seed)
    exposures: list[Exposure] = []
    before: list[Event] = []
    after: list[Event] = []
    truth: dict = {"x": [[], []], "y": [[], []], "orders": {"EUR": [[], []], "USD": [[], []]},
                   "revenue": {"EUR": [[], []], "USD": [[], []]}}
    for v in range(2):
        for i in range(N):
            visitor = f"c{v}-{i}"
            x = int(rng.choice([0, 0, 0, 1, 2]))  # signups before the experience
            before += [Conversion(visitor_id=visitor, goal="signup", ts=T0 - 5000 + j, event_id=f"{visitor}-pre{j}")
                       for j in range(x)]
            exposures.append(exposure(visitor, v, T0 + i))
            y = bool(rng.random() < 0.08 + 0.15 * x + 0.04 * v)
            if y:
                after.append(Conversion(visitor_id=visitor, goal="signup", ts=T0 + i + 60, event_id=f"{visitor}-y"))
            truth["x"][v].append(x)
            truth["y"][v].append(float(y))
            for cur in ("EUR", "USD"):
                orders = int(rng.poisson(0.25))
                values = [round(float(rng.lognormal(3.5 + 0.1 * v, 0.5)), 2) for _ in range(orders)]
                after += [Purchase(visitor_id=visitor, order_id=f"{visitor}-{cur}-{k}", value=value, currency=cur,
                                   ts=T0 + i + 120 + k) for k, value in enumerate(values)]
                truth["orders"][cur][v].append(float(orders))
                truth["revenue"][cur][v].append(sum(values))
    return exposures, before, after, truth


def test_cuped_and_currencies_from_the_aggregator(redis_url: str) -> None:
    exposures, before, after, truth = _simulate(31)
    results = aggregate_and_read(redis_url, exposures, after, experience(goals=("signup", "purchase")),
                                 pre_events=before)
    rows = results.goals["signup"].variants
    assert [r.conversions for r in rows] == [int(sum(truth["y"][v])) for v in range(2)]

    sums = []
    for v in range(2):
        x, y = np.array(truth["x"][v], float), np.array(truth["y"][v])
        sums.append(CupedSums(n=N, sum_y=y.sum(), sum_y2=y.sum(), sum_x=x.sum(), sum_x2=(x * x).sum(),
                              sum_xy=(x * y).sum()))
    expected = adjust_rates(sums)
    for v in range(2):
        got = rows[v].cuped
        assert got is not None and got.theta == pytest.approx(expected[v].theta, rel=1e-9)
        assert got.rate == pytest.approx(expected[v].rate, rel=1e-9)
    assert rows[1].cuped.variance_reduction == pytest.approx(expected[1].variance_reduction, rel=1e-9)
    assert rows[1].cuped.variance_reduction > 0.1  # history predicts conversion here
    assert rows[1].uplift is not None  # the unadjusted numbers stay

    assert set(results.value_by_currency) == {"EUR", "USD"}  # never summed into one
    for cur in ("EUR", "USD"):
        for v, row in enumerate(results.value_by_currency[cur]):
            r, o = np.array(truth["revenue"][cur][v]), np.array(truth["orders"][cur][v])
            assert row.orders == o.sum() and row.buyers == (o > 0).sum()
            assert row.revenue == pytest.approx(r.sum())
            assert row.revenue_per_visitor.value == pytest.approx(r.mean())
            ratio, se = ratio_delta(N, r.sum(), o.sum(), (r * r).sum(), (o * o).sum(), (r * o).sum())
            assert row.average_order_value.value == pytest.approx(ratio)
            lo, hi = row.average_order_value.interval
            assert (hi - lo) / 2 == pytest.approx(1.959964 * se, rel=1e-6)
