"""UX and CX metrics checked against scipy / statsmodels, the reference examples and edge cases."""

from __future__ import annotations

import math
from collections import Counter

import msgspec
import numpy as np
import pytest
from scipy import stats as st
from statsmodels.stats.proportion import proportion_confint

from personalization.measurement import ux_cx
from personalization.measurement.stats import Z95, nps_interval
from personalization.measurement.ux_cx import (
    MetricEstimate,
    abandonment_rate,
    average_order_value,
    ces_from_histogram,
    channel_switching,
    click_through_rate,
    csat_from_histogram,
    geometric_mean_from_log_sums,
    nps_from_counts,
    nps_from_histogram,
    repeat_purchase_rate,
    retention_by_cohort,
    sus_mean,
    sus_score,
    task_success,
    task_time_summary,
)


def _wilson(x: int, n: int) -> tuple[float, float]:
    return proportion_confint(x, n, alpha=0.05, method="wilson")


def _t_interval(values: np.ndarray) -> tuple[float, float]:
    return st.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=st.sem(values))


def test_exported_surface_and_wire_names() -> None:
    for name in ux_cx.__all__:
        assert hasattr(ux_cx, name), name
    encoded = msgspec.json.decode(msgspec.json.encode(MetricEstimate(score=None, interval=None, n=0)))
    assert encoded == {"score": None, "interval": None, "n": 0}


# ---------------------------------------------------------------------------------------------- rates


@pytest.mark.parametrize(
    ("metric", "args", "x", "n"),
    [
        (task_success, (7, 9), 7, 9),
        (task_success, (9, 9), 9, 9),
        (click_through_rate, (42, 1_300), 42, 1_300),
        (repeat_purchase_rate, (18, 120), 18, 120),
        (abandonment_rate, (80, 52), 28, 80),  # started 80, completed 52 -> 28 abandoned
        (abandonment_rate, (80, 80), 0, 80),
    ],
)
def test_rates_are_wilson(metric, args: tuple[int, int], x: int, n: int) -> None:  # type: ignore[no-untyped-def]
    result = metric(*args)
    assert result.n == n
    assert result.score == pytest.approx(x / n)
    assert result.interval == pytest.approx(_wilson(x, n), abs=1e-7)


def test_rates_without_data_are_none() -> None:
    for result in (task_success(0, 0), click_through_rate(0, 0), repeat_purchase_rate(0, 0), abandonment_rate(0, 0)):
        assert result == MetricEstimate(score=None, interval=None, n=0)
    with pytest.raises(ValueError):
        abandonment_rate(10, 11)
    with pytest.raises(ValueError):
        task_success(3, 0)


def test_average_order_value() -> None:
    orders = np.array([19.0, 45.5, 120.0, 33.3, 8.99, 61.0])
    plain = average_order_value(float(orders.sum()), len(orders))
    assert plain.score == pytest.approx(orders.mean()) and plain.interval is None and plain.n == 6
    with_sq = average_order_value(float(orders.sum()), len(orders), float((orders**2).sum()))
    assert with_sq.score == pytest.approx(orders.mean())
    assert with_sq.interval == pytest.approx(_t_interval(orders), rel=1e-9)
    assert average_order_value(0.0, 0) == MetricEstimate(score=None, interval=None, n=0)


# ------------------------------------------------------------------------------------------ task time


def test_task_time_summary_matches_scipy() -> None:
    durations = np.random.default_rng(11).lognormal(math.log(30_000), 0.6, size=25)
    summary = task_time_summary(durations.tolist())
    logs = np.log(durations)
    assert summary.n == 25
    assert summary.median == pytest.approx(float(np.median(durations)))
    assert summary.arithmetic_mean == pytest.approx(float(durations.mean()))
    assert summary.geometric_mean.score == pytest.approx(st.gmean(durations), rel=1e-12)
    lo, hi = _t_interval(logs)
    assert summary.geometric_mean.interval == pytest.approx((math.exp(lo), math.exp(hi)), rel=1e-9)
    assert summary.geometric_mean.n == 25


def test_geometric_mean_from_log_sums_equals_row_version() -> None:
    durations = [1_200.0, 3_400.0, 2_100.0, 15_000.0, 2_600.0]
    logs = [math.log(d) for d in durations]
    from_sums = geometric_mean_from_log_sums(len(logs), sum(logs), sum(v * v for v in logs))
    assert from_sums == task_time_summary(durations).geometric_mean
    assert from_sums.score is not None and from_sums.score < sum(durations) / len(durations)


def test_task_time_edges() -> None:
    empty = task_time_summary([])
    assert empty.median is None and empty.arithmetic_mean is None
    assert empty.geometric_mean == MetricEstimate(score=None, interval=None, n=0)
    single = task_time_summary([2_000.0])
    assert single.geometric_mean.score == pytest.approx(2_000.0) and single.geometric_mean.interval is None
    same = task_time_summary([1_500.0] * 4)
    assert same.geometric_mean.interval == (pytest.approx(1_500.0), pytest.approx(1_500.0))
    for bad in ([0.0], [-5.0], [float("nan")], [float("inf")]):
        with pytest.raises(ValueError):
            task_time_summary(bad)


# ------------------------------------------------------------------------------------------------ SUS


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([3] * 10, 50.0),
        ([5, 1] * 5, 100.0),
        ([1, 5] * 5, 0.0),
        ([4, 2, 5, 1, 4, 2, 4, 1, 5, 2], 85.0),
    ],
)
def test_sus_score(answers: list[int], expected: float) -> None:
    assert sus_score(answers) == expected


def test_sus_score_rejects_bad_answers() -> None:
    with pytest.raises(ValueError):
        sus_score([3] * 9)
    with pytest.raises(ValueError):
        sus_score([3] * 9 + [6])


def test_sus_mean_matches_scipy_t() -> None:
    scores = np.array([72.5, 65.0, 80.0, 57.5, 90.0, 67.5, 75.0, 52.5])
    result = sus_mean(scores.tolist())
    assert result.score == pytest.approx(scores.mean())
    assert result.interval == pytest.approx(_t_interval(scores), rel=1e-9)
    assert result.n == 8


def test_sus_mean_clips_and_edges() -> None:
    lo, hi = sus_mean([100.0, 95.0]).interval  # type: ignore[misc]
    assert hi == 100.0 and lo >= 0.0
    assert sus_mean([]) == MetricEstimate(score=None, interval=None, n=0)
    assert sus_mean([70.0]) == MetricEstimate(score=70.0, interval=None, n=1)
    with pytest.raises(ValueError):
        sus_mean([101.0])


# ------------------------------------------------------------------------------------------------ NPS


def test_nps_reference_example_is_zero() -> None:
    responses = [10, 9, 9, 8, 7, 6, 5, 3, 10, 0]
    result = nps_from_histogram(Counter(responses))
    assert result.score == pytest.approx(0.0) and result.n == 10
    # P = D = 0.4: var = 0.8/10; also = population variance of the +1/0/-1 scores / n.
    coded = np.array([1 if r >= 9 else -1 if r <= 6 else 0 for r in responses])
    half = 100 * Z95 * math.sqrt(coded.var(ddof=0) / len(coded))
    assert half == pytest.approx(100 * Z95 * math.sqrt(0.08))
    assert result.interval == pytest.approx((-half, half))


def test_nps_from_counts_formula() -> None:
    result = nps_from_counts(promoters=520, passives=300, detractors=180)
    p, d, n = 0.52, 0.18, 1_000
    half = 100 * Z95 * math.sqrt((p + d - (p - d) ** 2) / n)
    assert result.score == pytest.approx(34.0)
    assert result.interval == pytest.approx((34.0 - half, 34.0 + half))


def test_nps_edges() -> None:
    assert nps_from_counts(0, 0, 0) == MetricEstimate(score=None, interval=None, n=0)
    all_promoters = nps_from_counts(5, 0, 0)
    # Wald collapsed this to [100, 100] (the defect of issue #18); small n uses stats.nps_interval.
    assert all_promoters.score == 100.0 and all_promoters.interval == nps_interval(5, 0, 0)
    lo, hi = all_promoters.interval  # type: ignore[misc]
    assert lo < 100.0 and hi == 100.0
    one = nps_from_counts(1, 0, 0)
    assert one.score == 100.0 and one.interval is not None and one.interval[0] < 0.0
    clipped = nps_from_counts(9, 1, 0)  # 90 ± 18.6 would pass 100
    assert clipped.interval is not None and clipped.interval[1] == 100.0
    with pytest.raises(ValueError):
        nps_from_histogram({11: 3})
    with pytest.raises(ValueError):
        nps_from_counts(-1, 0, 0)


# ------------------------------------------------------------------------------------------ CSAT, CES


def test_csat_reference_example_is_sixty_percent() -> None:
    result = csat_from_histogram(Counter([5, 4, 3, 5, 1]))
    assert result.score == pytest.approx(60.0) and result.n == 5
    lo, hi = _wilson(3, 5)
    assert result.interval == pytest.approx((100 * lo, 100 * hi), abs=1e-5)


def test_csat_edges() -> None:
    assert csat_from_histogram({}) == MetricEstimate(score=None, interval=None, n=0)
    assert csat_from_histogram({5: 4}).score == 100.0
    with pytest.raises(ValueError):
        csat_from_histogram({0: 1})


def test_ces_matches_scipy_t() -> None:
    hist = {1: 4, 2: 9, 3: 6, 4: 3, 5: 2, 7: 1}
    values = np.repeat(list(hist), list(hist.values())).astype(float)
    result = ces_from_histogram(hist)
    assert result.n == 25
    assert result.score == pytest.approx(values.mean())
    assert result.interval == pytest.approx(_t_interval(values), rel=1e-9)


def test_ces_edges() -> None:
    assert ces_from_histogram({}) == MetricEstimate(score=None, interval=None, n=0)
    assert ces_from_histogram({2: 5}) == MetricEstimate(score=2.0, interval=(2.0, 2.0), n=5)
    lo, _ = ces_from_histogram({1: 2, 2: 1}).interval  # type: ignore[misc]
    assert lo == 1.0  # clipped to the scale
    with pytest.raises(ValueError):
        ces_from_histogram({8: 1})
    with pytest.raises(ValueError):
        ces_from_histogram({3: -1})


# ------------------------------------------------------------------------------------------ retention


def test_retention_by_cohort() -> None:
    first_seen = {"a": 0, "b": 0, "c": 0, "d": 0, "e": 1, "f": 1, "g": 2}
    active = {
        "a": {0, 1, 2},
        "b": {0, 2},
        "c": {0},
        "d": {0, 1, 5},  # week 5 is beyond max_weeks for cohort 0
        "e": {1, 2},
        "f": {1},
        "g": {2},
    }
    cohorts = retention_by_cohort(first_seen, active, max_weeks=2)
    assert [c.cohort for c in cohorts] == [0, 1, 2]
    week0, week1, week2 = cohorts
    assert week0.size == 4 and week0.retention == (1.0, 0.5, 0.5) and week0.churn == 0.5
    # Data ends at week 5 (d's last visit), so cohort 1 has been watched for its full 2 weeks.
    assert week1.retention == (1.0, 0.5, 0.0) and week1.churn == 1.0
    assert week2.retention == (1.0, 0.0, 0.0)

    young = retention_by_cohort(first_seen, active, max_weeks=2, current_week=2)
    assert young[1].retention == (1.0, 0.5) and young[1].churn is None
    assert young[2].retention == (1.0,) and young[2].churn is None
    assert retention_by_cohort({}, {}, max_weeks=4) == ()
    with pytest.raises(ValueError):
        retention_by_cohort(first_seen, active, max_weeks=-1)


# ---------------------------------------------------------------------------------- channel switching


def test_channel_switching() -> None:
    events = [
        ("v1", 1.0, "web"),
        ("v2", 1.5, "app"),
        ("v1", 2.0, "email"),
        ("v1", 3.0, "web"),
        ("v3", 3.5, "web"),
        ("v2", 4.0, "app"),
        ("v3", 5.0, "web"),
        ("v4", 6.0, "email"),
        ("v4", 7.0, "web"),
    ]
    result = channel_switching(events)
    assert result.multi_channel.score == pytest.approx(0.5) and result.multi_channel.n == 4
    assert result.multi_channel.interval == pytest.approx(_wilson(2, 4), abs=1e-7)
    counted = {(t.from_channel, t.to_channel): t.count for t in result.transitions}
    assert counted == {("web", "email"): 1, ("email", "web"): 2}
    assert (result.transitions[0].from_channel, result.transitions[0].to_channel) == ("email", "web")
    assert len(channel_switching(events, top=1).transitions) == 1


def test_channel_switching_edges() -> None:
    empty = channel_switching([])
    assert empty.multi_channel == MetricEstimate(score=None, interval=None, n=0) and empty.transitions == ()
    with pytest.raises(ValueError):
        channel_switching([("v1", 5.0, "web"), ("v1", 4.0, "app")])
