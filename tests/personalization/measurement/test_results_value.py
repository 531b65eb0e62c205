"""Value metrics per currency: the delta method against a direct per-visitor computation, a seeded
coverage check, and the results read from fixture hashes (currencies never summed)."""

from __future__ import annotations

import asyncio

import msgspec
import numpy as np
import pytest
from redis.asyncio import Redis
from scipy import stats as sps

from personalization.measurement.results import experiment_results
from personalization.measurement.results_value import ratio_delta
from personalization.measurement.stats import Z95
from personalization.store.keys import agg_key
from personalization.types import Experience


def _visitors(rng: np.random.Generator, n: int, spend: float) -> tuple[np.ndarray, np.ndarray]:
    """Orders per visitor (most none) and their revenue (lognormal order values)."""
    orders = rng.poisson(0.3, n)
    revenue = np.array([rng.lognormal(np.log(spend), 0.6, k).sum() for k in orders])
    return revenue, orders.astype(float)


def _sums(r: np.ndarray, o: np.ndarray) -> tuple[float, ...]:
    return (float(r.sum()), float(o.sum()), float((r * r).sum()), float((o * o).sum()), float((r * o).sum()))


def test_delta_method_equals_the_direct_computation_on_visitors() -> None:
    rng = np.random.default_rng(3)
    r, o = _visitors(rng, 4000, 40.0)
    ratio, se = ratio_delta(len(r), *_sums(r, o))
    # Direct: gradient of f(μ_R, μ_O) = μ_R/μ_O at the sample means, times the sample covariance matrix / n.
    mr, mo = r.mean(), o.mean()
    grad = np.array([1.0 / mo, -mr / mo**2])
    direct = float(np.sqrt(grad @ np.cov(np.vstack([r, o]), ddof=1) @ grad / len(r)))
    assert ratio == pytest.approx(r.sum() / o.sum(), rel=1e-12)
    assert se == pytest.approx(direct, rel=1e-9)
    assert ratio_delta(10, 0.0, 0.0, 0.0, 0.0, 0.0) is None and ratio_delta(1, 5.0, 1.0, 25.0, 1.0, 5.0) is None


def test_delta_interval_covers_the_true_average_order_value() -> None:
    rng = np.random.default_rng(17)
    true_aov = 40.0 * np.exp(0.6**2 / 2)  # mean of the lognormal order value
    covered = 0
    for _ in range(1000):
        ratio, se = ratio_delta(1500, *_sums(*_visitors(rng, 1500, 40.0)))
        covered += abs(ratio - true_aov) <= Z95 * se
    assert abs(covered / 1000 - 0.95) <= 0.02


def test_results_report_each_currency_apart(redis_url: str) -> None:
    rng = np.random.default_rng(8)
    key = "value-fixture"
    arms = {"EUR": [_visitors(rng, 800, 40.0), _visitors(rng, 800, 46.0)],
            "USD": [_visitors(rng, 800, 55.0), _visitors(rng, 800, 55.0)]}
    fields: dict[str, float] = {}
    for v in range(2):
        fields |= {f"{v}:visitors": 800, f"{v}:exposures": 800}
    for cur, pair in arms.items():
        for v, (r, o) in enumerate(pair):
            s = _sums(r, o)
            fields |= {f"{v}:cur:{cur}:{name}": value for name, value in zip(("revenue", "orders", "rsq", "osq", "ro"), s)}
            fields[f"{v}:cur:{cur}:buyers"] = int((o > 0).sum())
    exp = Experience(id="id", key=key, name=key, type="ab_test", variants=("b",), weights=(0.5, 0.5), goals=("purchase",))

    async def body():
        redis = Redis.from_url(redis_url)
        try:
            await redis.hset(agg_key(key, "all"), mapping={k: repr(float(v)) if isinstance(v, float) else v for k, v in fields.items()})
            return await experiment_results(redis, exp)
        finally:
            await redis.aclose()

    results = asyncio.run(body())
    assert set(results.value_by_currency) == {"EUR", "USD"}
    for cur, pair in arms.items():
        control, variant = results.value_by_currency[cur]
        (r0, o0), (r1, o1) = pair
        assert variant.revenue == pytest.approx(r1.sum()) and variant.orders == o1.sum() and variant.buyers == (o1 > 0).sum()
        rpv = variant.revenue_per_visitor
        assert rpv.value == pytest.approx(r1.mean()) and rpv.difference == pytest.approx(r1.mean() - r0.mean())
        assert rpv.p_value == pytest.approx(sps.ttest_ind(r1, r0, equal_var=False).pvalue, rel=1e-6)
        lo, hi = rpv.interval
        t = sps.t.ppf(0.975, len(r1) - 1) * r1.std(ddof=1) / np.sqrt(len(r1))
        assert (lo, hi) == pytest.approx((r1.mean() - t, r1.mean() + t), rel=1e-9)
        aov = variant.average_order_value
        a1, se1 = ratio_delta(800, *_sums(r1, o1))
        a0, se0 = ratio_delta(800, *_sums(r0, o0))
        assert aov.value == pytest.approx(a1) and aov.difference == pytest.approx(a1 - a0)
        assert aov.p_value == pytest.approx(2 * sps.norm.sf(abs(a1 - a0) / np.hypot(se0, se1)), rel=1e-6)
        assert control.revenue_per_visitor.difference is None and control.average_order_value.p_value is None
        assert (control.compared_with, variant.compared_with) == (None, "control")
    assert results.value_by_currency["EUR"][1].average_order_value.p_value < 0.05  # +15 % planted in EUR
    assert results.personalization_value_lift == {}  # no holdout


def _personalized_shop(seed: int, n: int) -> tuple[list, list, dict[str, np.ndarray]]:
    """A personalization experience (control empty, variants 1 and 2, a 30 % holdout) whose visitors
    buy in EUR through the real aggregator; returns the records and each arm's per-visitor revenue."""
    from personalization.measurement.events import Purchase
    from tests.personalization.measurement.test_aggregation import T0, exposure

    rng = np.random.default_rng(seed)
    exposures, events = [], []
    revenue: dict[str, list[float]] = {"h": [], "1": [], "2": []}
    for i in range(n):
        visitor = f"shop-{i}"
        held = bool(rng.random() < 0.3)
        variant = 0 if held else int(rng.integers(1, 3))
        exposures.append(exposure(visitor, variant, T0 + i, holdout=held))
        spend = 0.0
        for order in range(int(rng.poisson(0.6 if held else 0.9))):
            value = round(float(rng.lognormal(np.log(30.0), 0.5)), 2)
            events.append(Purchase(visitor_id=visitor, order_id=f"o-{i}-{order}", value=value, currency="EUR",
                                   ts=T0 + i + 60 + order))
            spend += value
        revenue["h" if held else str(variant)].append(spend)
    return exposures, events, {arm: np.array(values) for arm, values in revenue.items()}


def test_a_personalization_experience_compares_value_with_its_holdout(redis_url: str) -> None:
    from tests.personalization.measurement.test_results import aggregate_and_read

    exposures, events, revenue = _personalized_shop(5, 600)
    exp = Experience(id="id", key="hero", name="hero", type="personalization", variants=("b", "c"),
                     weights=(0.0, 0.5, 0.5), holdout=0.3, goals=("purchase",))
    results = aggregate_and_read(redis_url, exposures, events, exp)
    control, first, second = results.value_by_currency["EUR"]
    held = revenue["h"]
    # control is empty: nothing is compared with it; every variant is compared with the holdout
    assert control.visitors == 0 and control.compared_with is None and control.revenue_per_visitor.difference is None
    for row, arm in ((first, revenue["1"]), (second, revenue["2"])):
        assert row.compared_with == "holdout" and row.visitors == len(arm)
        assert row.revenue == pytest.approx(arm.sum())
        assert row.revenue_per_visitor.difference == pytest.approx(arm.mean() - held.mean(), rel=1e-9)
        welch = sps.ttest_ind(arm, held, equal_var=False)
        assert row.revenue_per_visitor.p_value == pytest.approx(welch.pvalue, rel=1e-6)
        assert row.average_order_value.difference is not None
    # the value counterpart of personalization_lift: every variant pooled against the holdout
    lift = results.personalization_value_lift["EUR"]
    treated = np.concatenate([revenue["1"], revenue["2"]])
    assert (lift.treated.visitors, lift.holdout.visitors) == (len(treated), len(held))
    assert lift.holdout.revenue == pytest.approx(held.sum()) and lift.treated.revenue == pytest.approx(treated.sum())
    assert lift.treated.revenue_per_visitor.difference == pytest.approx(treated.mean() - held.mean(), rel=1e-9)
    assert lift.treated.revenue_per_visitor.p_value == pytest.approx(
        sps.ttest_ind(treated, held, equal_var=False).pvalue, rel=1e-6
    )
    assert lift.holdout.revenue_per_visitor.difference is None
    assert lift.treated.orders == sum(r.orders for r in (first, second))

    # The same counts read as an A/B test: variants are compared with control (empty here: nothing).
    ab = aggregate_and_read(redis_url, [], [], msgspec.structs.replace(exp, type="ab_test"))
    assert all(row.compared_with is None for row in ab.value_by_currency["EUR"])
    assert ab.personalization_value_lift["EUR"] == lift  # a holdout is a holdout, whatever the type
