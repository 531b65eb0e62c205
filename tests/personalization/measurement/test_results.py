"""Results from aggregates equal the stats / ux_cx functions applied to the known counts."""

from __future__ import annotations

import asyncio
import math
import statistics

import msgspec
import numpy as np
import pytest
from redis.asyncio import Redis
from scipy import stats as sps

from personalization.measurement.events import Abandonment, Click, Conversion, Event, Feedback, Purchase, Survey, Task
from personalization.measurement.results import ExperimentResults, experiment_results
from personalization.measurement.results_ux import histogram_quantile
from personalization.measurement.stats import (
    CupedSums,
    compare_rates,
    cuped_adjust,
    mean_interval,
    srm_p_value,
    welch_p_value,
    wilson_interval,
)
from personalization.types import Experience, Exposure
from personalization.measurement.ux_cx import (
    abandonment_rate,
    average_order_value,
    ces_from_histogram,
    click_through_rate,
    csat_from_histogram,
    nps_from_histogram,
    repeat_purchase_rate,
    sus_mean,
    task_success,
    task_time_summary,
)
from tests.personalization.measurement.test_aggregation import T0, drain, exposure, make_aggregator, push


def _run(coro):  # noqa: ANN001, ANN202 - small helper for async bodies
    return asyncio.run(coro)


def experience(key: str = "hero", weights: tuple[float, ...] = (0.5, 0.5), goals: tuple[str, ...] = ("signup",)) -> Experience:
    return Experience(
        id=f"id-{key}", key=key, name=key, type="ab_test",
        variants=tuple(f"{key}-v{i}" for i in range(1, len(weights))), weights=weights, goals=goals,
    )


def aggregate_and_read(redis_url: str, exposures: list[Exposure], events: list[Event], exp: Experience,
                       pre_events: list[Event] = (), **kwargs) -> ExperimentResults:  # noqa: ANN003
    async def body() -> ExperimentResults:
        redis = Redis.from_url(redis_url)
        aggregator = make_aggregator(redis)
        if pre_events:  # history from before the experiment
            await push(redis, [], pre_events)
            await drain(aggregator)
        await push(redis, exposures, events)
        await drain(aggregator)
        try:
            return await experiment_results(redis, exp, **kwargs)
        finally:
            await redis.aclose()

    return _run(body())


def _arm(variant: int, n: int, converters: int, prefix: str, channel_of=lambda i: "web",
         segment_of=lambda i: {}) -> tuple[list[Exposure], list[Event]]:  # noqa: ANN001
    exposures = [
        exposure(f"{prefix}{i}", variant, T0 + i, channel=channel_of(i), segments=segment_of(i)) for i in range(n)
    ]
    events: list[Event] = [Conversion(visitor_id=f"{prefix}{i}", goal="signup", ts=T0 + i + 60) for i in range(converters)]
    return exposures, events


def test_goal_results_equal_compare_rates_with_breakdowns(redis_url: str) -> None:
    channel = lambda i: "web" if i % 2 == 0 else "ios"  # noqa: E731
    segment = lambda i: {"price": 0.9} if i % 4 == 0 else {}  # noqa: E731
    x0, e0 = _arm(0, 1000, 100, "c", channel, segment)
    x1, e1 = _arm(1, 1000, 130, "t", channel, segment)
    extra = [Purchase(visitor_id="t1", order_id="o1", value=12.0, ts=T0 + 500)]
    results = aggregate_and_read(redis_url, x0 + x1, e0 + e1 + extra, experience())

    assert list(results.goals) == ["signup", "purchase"]  # configured first, then seen
    control, treatment = results.goals["signup"].variants
    assert (control.variant, control.exposures, control.conversions, control.rate) == (0, 1000, 100, 0.1)
    assert control.interval == wilson_interval(100, 1000)
    assert control.uplift is control.uplift_interval is control.p_value is control.chance_to_beat_control is None
    expected = compare_rates((100, 1000), (130, 1000))
    assert treatment.exposures == expected.n and treatment.conversions == expected.conversions
    assert treatment.rate == expected.rate and treatment.interval == expected.interval
    assert treatment.uplift == pytest.approx(0.3) and treatment.uplift == expected.uplift
    assert treatment.uplift_interval == expected.uplift_interval
    assert treatment.p_value == expected.p_value
    assert treatment.chance_to_beat_control == expected.chance_to_beat_control
    assert treatment.enough_data and results.enough_data
    assert results.srm_p_value == srm_p_value([1000, 1000], [0.5, 0.5]) and not results.srm_flag
    assert results.visitors == [1000, 1000] and results.exposures == [1000, 1000]

    # Channel: even i → web. Converters are i < 100 (control) / i < 130 (treatment).
    web = results.breakdowns["channel"]["web"]["signup"].variants
    assert (web[0].exposures, web[0].conversions, web[1].exposures, web[1].conversions) == (500, 50, 500, 65)
    assert web[1].p_value == compare_rates((50, 500), (65, 500)).p_value
    # Segment: i % 4 == 0 → "price" (score 0.9), the rest "none".
    price = results.breakdowns["segment"]["price"]["signup"].variants
    assert (price[0].exposures, price[0].conversions, price[1].exposures, price[1].conversions) == (250, 25, 250, 33)
    assert price[1].uplift_interval == compare_rates((25, 250), (33, 250)).uplift_interval
    assert set(results.breakdowns["segment"]) == {"price", "none"}

    # The wire shape the issue asks for.
    wire = msgspec.json.decode(msgspec.json.encode(results))
    assert {"experience", "srm_p_value", "srm_flag", "enough_data", "goals", "breakdowns", "ux", "cx"} <= set(wire)
    variant = wire["goals"]["signup"]["variants"][1]
    assert {"variant", "exposures", "conversions", "rate", "interval", "uplift", "uplift_interval",
            "p_value", "chance_to_beat_control"} <= set(variant)
    assert wire["goals"]["signup"]["variants"][0]["uplift"] is None
    assert set(wire["cx"]["0"]["nps"]) == {"score", "interval", "n"}


def test_srm_flag_on_a_skewed_split(redis_url: str) -> None:
    x0, _ = _arm(0, 600, 0, "c")
    x1, _ = _arm(1, 400, 0, "t")
    results = aggregate_and_read(redis_url, x0 + x1, [], experience())
    assert results.srm_p_value == srm_p_value([600, 400], [0.5, 0.5])
    assert results.srm_p_value < 0.001 and results.srm_flag
    assert not results.enough_data  # no conversions yet


def test_srm_matches_three_way_weights_and_holdout_is_apart(redis_url: str) -> None:
    exposures = []
    for variant, n in enumerate((200, 400, 400)):
        exposures += _arm(variant, n, 0, f"v{variant}-")[0]
    exposures += [exposure(f"h{i}", 0, T0, holdout=True) for i in range(50)]
    results = aggregate_and_read(redis_url, exposures, [], experience(weights=(0.2, 0.4, 0.4)))
    assert results.visitors == [200, 400, 400] and results.holdout_visitors == 50
    assert results.srm_p_value == pytest.approx(1.0) and not results.srm_flag


def test_values_welch_and_cuped(redis_url: str) -> None:
    rng = np.random.default_rng(3)
    n = 300
    pre = rng.gamma(2.0, 10.0, size=2 * n).round(2)  # spend before the experiment
    exposures, events, pre_events = [], [], []
    y = np.zeros(2 * n)
    x = np.zeros(2 * n)
    for i in range(2 * n):
        variant, visitor = i % 2, f"u{i}"
        exposures.append(exposure(visitor, variant, T0 + 1000 + i))
        if i % 3:  # two thirds had spend before …
            pre_events.append(Conversion(visitor_id=visitor, goal="spend", value=float(pre[i]), ts=T0 + i))
            x[i] = pre[i]
        if i % 5 == 0:  # … and one late-processed pre-exposure value (stamped before the exposure)
            events.append(Conversion(visitor_id=visitor, goal="spend", value=1.5, ts=T0 + 900))
            x[i] += 1.5
        for j in range(1 + (i % 7 == 0)):  # spend during the experiment, correlated with before
            value = float(round(0.8 * pre[i] + rng.gamma(2.0, 2.0) + 3 * variant, 2))
            events.append(Conversion(visitor_id=visitor, goal="spend", value=value, ts=T0 + 2000 + i + j))
            y[i] += value
    results = aggregate_and_read(redis_url, exposures, events, experience(goals=("spend",)), pre_events=pre_events)

    control, treatment = (v.value for v in results.goals["spend"].variants)
    y0, y1 = y[0::2], y[1::2]
    assert control.total == pytest.approx(y0.sum()) and treatment.mean == pytest.approx(y1.mean())
    assert treatment.interval == pytest.approx(mean_interval(n, y1.sum(), (y1**2).sum())[1])
    assert treatment.p_value == pytest.approx(sps.ttest_ind(y1, y0, equal_var=False).pvalue, rel=1e-6)
    assert control.p_value is None
    arms = [
        CupedSums(n=n, sum_y=ya.sum(), sum_x=xa.sum(), sum_x2=(xa**2).sum(), sum_y2=(ya**2).sum(),
                  sum_xy=(xa * ya).sum())
        for ya, xa in ((y0, x[0::2]), (y1, x[1::2]))
    ]
    expected = cuped_adjust(arms)
    assert treatment.cuped.theta == pytest.approx(expected.theta, rel=1e-9) and expected.theta > 0.1
    assert treatment.cuped.mean == pytest.approx(expected.arms[1].mean, rel=1e-9)
    # CUPED narrows the interval (that is the point of it).
    assert treatment.cuped.interval[1] - treatment.cuped.interval[0] < treatment.interval[1] - treatment.interval[0]
    total = expected.arms[1].mean * n
    sums1 = (total, expected.arms[1].variance * (n - 1) + total * total / n)
    total0 = expected.arms[0].mean * n
    sums0 = (total0, expected.arms[0].variance * (n - 1) + total0 * total0 / n)
    assert treatment.cuped.p_value == pytest.approx(welch_p_value(n, *sums0, n, *sums1), rel=1e-9)


def test_ux_and_cx_blocks_from_known_events(redis_url: str) -> None:
    exposures = [exposure(f"a{i}", 0, T0) for i in range(40)] + [exposure(f"b{i}", 1, T0) for i in range(40)]
    durations = [800, 1200, 1500, 2100, 2500, 3000, 4100, 5200, 9000, 15000, 30000] * 3
    events: list[Event] = []
    for i, d in enumerate(durations):
        events.append(Task(visitor_id=f"b{i}", name="find", success=i % 4 != 0, duration_ms=d, touchpoint="search", ts=T0 + 1))
    events += [Abandonment(visitor_id=f"b{i}", touchpoint="search", ts=T0 + 2) for i in range(5)]
    events += [Click(visitor_id=f"b{i % 12}", touchpoint="search", ts=T0 + 3 + i) for i in range(20)]
    events += [Feedback(visitor_id=f"b{i}", text="…", problem=p, touchpoint="search", ts=T0 + 4)
               for i, p in enumerate(["slow", "slow", "filters", None])]
    sus_answers = [[5, 1, 5, 1, 5, 1, 5, 1, 5, 1], [4, 2, 4, 2, 4, 2, 4, 2, 4, 2], [3, 3, 3, 3, 3, 3, 3, 3, 3, 3]]
    events += [Survey(visitor_id=f"b{i}", metric="sus", answers=a, touchpoint="search", ts=T0 + 5)
               for i, a in enumerate(sus_answers)]
    nps = [10, 9, 9, 8, 7, 6, 5, 3, 10, 0]
    events += [Survey(visitor_id=f"a{i}", metric="nps", score=s, ts=T0 + 6) for i, s in enumerate(nps)]
    events += [Survey(visitor_id=f"a{i}", metric="csat", score=s, ts=T0 + 6) for i, s in enumerate([5, 4, 3, 5, 1])]
    events += [Survey(visitor_id=f"a{i}", metric="ces", score=s, ts=T0 + 6) for i, s in enumerate([2, 3, 1, 6])]
    orders = {"a0": [20.0, 35.0, 15.0], "a1": [50.0], "a2": [10.0, 12.5]}
    k = 0
    for visitor, values in orders.items():
        for value in values:
            k += 1
            events.append(Purchase(visitor_id=visitor, order_id=f"o{k}", value=value, touchpoint="checkout", ts=T0 + 7 + k))
    results = aggregate_and_read(redis_url, exposures, events, experience())

    search = results.ux["search"][1]
    assert search.task_success == task_success(sum(i % 4 != 0 for i in range(len(durations))), len(durations))
    assert search.abandonment_rate == abandonment_rate(len(durations) + 5, len(durations))
    assert search.click_through_rate == click_through_rate(12, 40)
    assert search.clicks == 20 and search.unique_problems == 2
    expected_time = task_time_summary(durations)
    assert search.task_time.n == len(durations)
    assert search.task_time.geometric_mean == pytest.approx(expected_time.geometric_mean.score)
    assert search.task_time.interval == pytest.approx(expected_time.geometric_mean.interval)
    assert search.task_time.mean == pytest.approx(statistics.fmean(durations))
    assert search.task_time.median == pytest.approx(statistics.median(durations), rel=0.047)
    lo, hi = search.task_time.median_interval
    assert lo < search.task_time.median < hi
    sus_scores = [100.0, 75.0, 50.0]
    expected_sus = sus_mean(sus_scores)
    assert search.sus.score == pytest.approx(75.0) and search.sus.n == 3
    assert search.sus.interval == pytest.approx(expected_sus.interval) and search.sus.interval[1] == 100.0
    assert results.ux["search"][0].task_success.n == 0  # control did nothing here

    checkout = results.ux["checkout"][0]
    all_orders = [v for values in orders.values() for v in values]
    assert checkout.average_order_value == average_order_value(sum(all_orders), 6, sum(v * v for v in all_orders))

    cx = results.cx[0]
    assert cx.nps == nps_from_histogram({s: nps.count(s) for s in set(nps)}) and cx.nps.score == 0.0
    assert cx.csat == csat_from_histogram({5: 2, 4: 1, 3: 1, 1: 1}) and cx.csat.score == pytest.approx(60.0)
    assert cx.ces == ces_from_histogram({2: 1, 3: 1, 1: 1, 6: 1})
    assert cx.repeat_purchase_rate == repeat_purchase_rate(2, 3)
    assert results.cx[1].nps.n == 0 and results.cx[1].nps.score is None
    purchase = results.goals["purchase"].variants[0]
    assert (purchase.conversions, purchase.value.total) == (3, sum(all_orders))


def test_empty_experience_has_no_verdicts(redis_url: str) -> None:
    async def body() -> ExperimentResults:
        redis = Redis.from_url(redis_url, decode_responses=True)
        try:
            return await experiment_results(redis, experience(weights=(0.34, 0.33, 0.33)))
        finally:
            await redis.aclose()

    results = _run(body())
    assert results.srm_p_value is None and not results.srm_flag and not results.enough_data
    variants = results.goals["signup"].variants
    assert [v.variant for v in variants] == [0, 1, 2]
    assert all(v.rate is None and v.p_value is None and v.uplift is None for v in variants)
    assert results.ux == {} and results.breakdowns == {"channel": {}, "segment": {}}


def test_histogram_quantile() -> None:
    assert histogram_quantile({}, 1) is None
    from personalization.measurement.attribution import bucket_bounds, duration_bucket

    b = duration_bucket(1000)
    low, high = bucket_bounds(b)
    assert low <= 1000 < high and high / low == pytest.approx(10 ** (1 / 50))
    assert histogram_quantile({b: 2}, 0) == pytest.approx(low)
    assert histogram_quantile({b: 2}, 2) == pytest.approx(high)
    assert histogram_quantile({b: 2}, 1) == pytest.approx(math.sqrt(low * high))


def test_median_task_time_of_few_durations(redis_url: str) -> None:
    exposures = [exposure("a", 1, T0)]
    events = [Task(visitor_id="a", name="t", success=True, duration_ms=d, touchpoint="p", ts=T0 + 1) for d in (1200, 5000)]
    results = aggregate_and_read(redis_url, exposures, events, experience())
    assert results.ux["p"][1].task_time.median == pytest.approx(statistics.median([1200, 5000]), rel=0.047)
