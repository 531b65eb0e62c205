"""UX metrics (per touchpoint) and CX metrics (across the journey): pure functions over counts.

Formulas follow ``/work/shared/reference/statistics.md``. Every single-number metric comes back as a
:class:`MetricEstimate` — ``{"score", "interval", "n"}`` on the wire — with ``score`` and
``interval`` ``None`` (never NaN) when there is too little data to define them.

Scales and their intervals:

* rates and shares (task success, abandonment, click-through, repeat purchase): Wilson, 0–1;
* CSAT: percent of 4s and 5s, Wilson × 100;
* NPS: −100…100, normal interval with each answer scored +1/0/−1 (adjusted Wald at small n);
* SUS (0–100), CES (1–7): mean with a Student-t interval;
* task time: median and geometric mean, the t interval computed on log times and exponentiated.

Intervals of bounded scales (NPS, SUS, CES) are clipped to the scale — the only departure from the
reference formulas, so a small sample never shows an NPS of 108.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Annotated

from msgspec import Meta, Struct

from personalization.measurement.stats import (
    Z95,
    mean_interval,
    nps_interval,
    wilson_interval,
)

__all__ = [
    "MetricEstimate",
    "TaskTimeSummary",
    "CohortRetention",
    "ChannelTransition",
    "ChannelSwitching",
    "SUS_AVERAGE",
    "task_success",
    "task_time_summary",
    "geometric_mean_from_log_sums",
    "abandonment_rate",
    "click_through_rate",
    "average_order_value",
    "sus_score",
    "sus_mean",
    "nps_from_counts",
    "nps_from_histogram",
    "csat_from_histogram",
    "ces_from_histogram",
    "repeat_purchase_rate",
    "retention_by_cohort",
    "channel_switching",
]

#: Average SUS across many published studies; a score above it is "above average".
SUS_AVERAGE = 68.0


class MetricEstimate(Struct, frozen=True, kw_only=True):
    """One metric value with its 95 % interval and the number of observations behind it.

    ``score`` is ``None`` when n is 0; ``interval`` is ``None`` when it cannot be estimated.
    """

    score: Annotated[float, Meta(description="The metric's value; null when `n` is 0.")] | None
    interval: (
        Annotated[
            tuple[float, float], Meta(description="95 % interval `[low, high]`; null when it cannot be estimated.")
        ]
        | None
    )
    n: Annotated[int, Meta(description="Observations behind the value.")]


def _rate(successes: int, n: int, scale: float = 1.0) -> MetricEstimate:
    """Share successes/n with its Wilson interval, both multiplied by ``scale``."""
    if n == 0:
        wilson_interval(successes, n)  # validates successes == 0
        return MetricEstimate(score=None, interval=None, n=0)
    lo, hi = wilson_interval(successes, n)
    return MetricEstimate(score=scale * successes / n, interval=(scale * lo, scale * hi), n=n)


def _clip(interval: tuple[float, float] | None, low: float, high: float) -> tuple[float, float] | None:
    if interval is None:
        return None
    return (max(low, interval[0]), min(high, interval[1]))


def _mean_estimate(n: int, total: float, total_sq: float, low: float, high: float) -> MetricEstimate:
    mean, interval = mean_interval(n, total, total_sq, "t")
    return MetricEstimate(score=mean, interval=_clip(interval, low, high), n=n)


def _histogram_sums(hist: Mapping[int, int], low: int, high: int, name: str) -> tuple[int, float, float]:
    """n, Σs, Σs² of a histogram {score: count}, checking scores lie in [low, high]."""
    n, total, total_sq = 0, 0.0, 0.0
    for score, count in hist.items():
        if not low <= score <= high:
            raise ValueError(f"{name} scores are {low}-{high}, got {score}")
        if count < 0:
            raise ValueError(f"{name} count for score {score} must be >= 0, got {count}")
        n += count
        total += score * count
        total_sq += score * score * count
    return n, total, total_sq


# ---------------------------------------------------------------------------------------------- UX


def task_success(successes: int, attempts: int) -> MetricEstimate:
    """Task success rate = successes / attempts with a Wilson interval (sound at usability-test n)."""
    return _rate(successes, attempts)


class TaskTimeSummary(Struct, frozen=True, kw_only=True):
    """Task times in ms. Times are right-skewed, so lead with ``median`` and ``geometric_mean``
    (its interval is a t interval on log times, exponentiated); ``arithmetic_mean`` misleads at
    small n and is given for reference."""

    n: int
    median: float | None
    geometric_mean: MetricEstimate
    arithmetic_mean: float | None


def geometric_mean_from_log_sums(n: int, sum_log: float, sum_log_sq: float) -> MetricEstimate:
    """Geometric mean from stored sums of log times (Σ ln t, Σ (ln t)²), so aggregates need no rows.

    GM = exp(mean(ln t)), interval = exp(mean(ln t) ± t_{0.975, n−1}·s_ln/√n).
    """
    mean_log, interval = mean_interval(n, sum_log, sum_log_sq, "t")
    return MetricEstimate(
        score=None if mean_log is None else math.exp(mean_log),
        interval=None if interval is None else (math.exp(interval[0]), math.exp(interval[1])),
        n=n,
    )


def task_time_summary(durations_ms: Sequence[float]) -> TaskTimeSummary:
    """Median, geometric mean (with interval) and arithmetic mean of task times.

    GM = exp((1/n)·Σ ln tᵢ); every duration must be a positive finite number.
    """
    for i, d in enumerate(durations_ms):
        if not (math.isfinite(d) and d > 0):
            raise ValueError(f"durations_ms[{i}] must be a positive number of ms, got {d}")
    n = len(durations_ms)
    logs = [math.log(d) for d in durations_ms]
    return TaskTimeSummary(
        n=n,
        median=float(statistics.median(durations_ms)) if n else None,
        geometric_mean=geometric_mean_from_log_sums(n, math.fsum(logs), math.fsum(v * v for v in logs)),
        arithmetic_mean=math.fsum(durations_ms) / n if n else None,
    )


def abandonment_rate(started: int, completed: int) -> MetricEstimate:
    """Abandonment = (started − completed) / started with a Wilson interval."""
    if not 0 <= completed <= started:
        raise ValueError(f"completed must be between 0 and started={started}, got {completed}")
    return _rate(started - completed, started)


def click_through_rate(unique_clickers: int, unique_exposed: int) -> MetricEstimate:
    """Click-through = unique clickers / unique exposed visitors with a Wilson interval."""
    return _rate(unique_clickers, unique_exposed)


def average_order_value(revenue: float, orders: int, revenue_sq: float | None = None) -> MetricEstimate:
    """Average order value = revenue / orders.

    With ``revenue_sq`` = Σ (order value)² stored too, the interval is the Student-t one on the mean;
    without it there is no spread to estimate and ``interval`` is ``None``.
    """
    if orders < 0:
        raise ValueError(f"orders must be >= 0, got {orders}")
    if orders == 0:
        return MetricEstimate(score=None, interval=None, n=0)
    if revenue_sq is None:
        return MetricEstimate(score=revenue / orders, interval=None, n=orders)
    mean, interval = mean_interval(orders, revenue, revenue_sq, "t")
    return MetricEstimate(score=mean, interval=interval, n=orders)


def sus_score(answers: Sequence[int]) -> float:
    """System Usability Scale of one respondent, 0–100.

    Ten items scored 1–5: odd items (1st, 3rd, …) give s − 1, even items 5 − s; the sum × 2.5.
    """
    if len(answers) != 10:
        raise ValueError(f"SUS has 10 answers, got {len(answers)}")
    for i, a in enumerate(answers):
        if not 1 <= a <= 5:
            raise ValueError(f"answers[{i}] must be 1-5, got {a}")
    return 2.5 * sum((a - 1) if i % 2 == 0 else (5 - a) for i, a in enumerate(answers))


def sus_mean(scores: Sequence[float]) -> MetricEstimate:
    """Mean SUS over respondents with a t interval (clipped to 0–100); ~68 is the cross-study average."""
    for i, s in enumerate(scores):
        if not 0 <= s <= 100:
            raise ValueError(f"scores[{i}] must be a SUS score 0-100, got {s}")
    return _mean_estimate(len(scores), math.fsum(scores), math.fsum(s * s for s in scores), 0.0, 100.0)


# ---------------------------------------------------------------------------------------------- CX


def nps_from_counts(promoters: int, passives: int, detractors: int, z: float = Z95) -> MetricEstimate:
    """Net Promoter Score = 100·(P − D) with P, D the shares of promoters and detractors.

    Each answer scored +1/0/−1: var = (P + D − (P − D)²)/n, interval = NPS ± 100·z·√var (clipped to
    −100…100) — or, below 10 answers or when every answer is the same, Rocks' adjusted Wald
    (:func:`~personalization.measurement.stats.nps_interval`), so one answer is never [100, 100].
    """
    interval = nps_interval(promoters, passives, detractors, z)  # validates the counts
    n = promoters + passives + detractors
    if n == 0:
        return MetricEstimate(score=None, interval=None, n=0)
    return MetricEstimate(score=100.0 * (promoters / n - detractors / n), interval=interval, n=n)


def nps_from_histogram(hist: Mapping[int, int]) -> MetricEstimate:
    """NPS from {score 0–10: count}: promoters 9–10, passives 7–8, detractors 0–6."""
    _histogram_sums(hist, 0, 10, "NPS")
    promoters = sum(c for s, c in hist.items() if s >= 9)
    passives = sum(c for s, c in hist.items() if 7 <= s <= 8)
    detractors = sum(c for s, c in hist.items() if s <= 6)
    return nps_from_counts(promoters, passives, detractors)


def csat_from_histogram(hist: Mapping[int, int]) -> MetricEstimate:
    """CSAT from {score 1–5: count}: percent of 4s and 5s, Wilson interval × 100."""
    n, _, _ = _histogram_sums(hist, 1, 5, "CSAT")
    satisfied = sum(c for s, c in hist.items() if s >= 4)
    return _rate(satisfied, n, scale=100.0)


def ces_from_histogram(hist: Mapping[int, int]) -> MetricEstimate:
    """Customer Effort Score from {score 1–7: count}: mean with a t interval (clipped to 1–7).

    Vary assumes the effort wording — "How much effort did you personally have to put forth to
    handle your request?", 1 = very low effort … 7 = very high effort — so **lower is better**. A
    survey worded "… made it easy for me" (agree = 7) must be reversed (8 − s) before it is stored.
    """
    n, total, total_sq = _histogram_sums(hist, 1, 7, "CES")
    return _mean_estimate(n, total, total_sq, 1.0, 7.0)


def repeat_purchase_rate(customers_with_2plus: int, customers_with_1plus: int) -> MetricEstimate:
    """Repeat-purchase rate = customers with ≥ 2 purchases / customers with ≥ 1 in the period (Wilson)."""
    return _rate(customers_with_2plus, customers_with_1plus)


class CohortRetention(Struct, frozen=True, kw_only=True):
    """One weekly cohort: ``retention[k]`` is the share of its visitors active in week cohort + k,
    for the weeks observed so far (k ≤ max_weeks); ``churn`` = 1 − retention[max_weeks], ``None``
    while the cohort is younger than max_weeks."""

    cohort: int
    size: int
    retention: tuple[float, ...]
    churn: float | None


def retention_by_cohort(
    first_seen_week: Mapping[Hashable, int],
    active_weeks: Mapping[Hashable, Iterable[int]],
    max_weeks: int,
    current_week: int | None = None,
) -> tuple[CohortRetention, ...]:
    """Cohort retention: cohort = week first seen; retention(k) = share of the cohort active k weeks on.

    Weeks after ``current_week`` (default: the latest week in the data) have not happened yet and are
    left out rather than reported as 0. Churn over the period = 1 − retention(max_weeks). Cohorts come
    back oldest first.
    """
    if max_weeks < 0:
        raise ValueError(f"max_weeks must be >= 0, got {max_weeks}")
    if current_week is None:
        weeks = list(first_seen_week.values())
        weeks.extend(w for v in first_seen_week for w in active_weeks.get(v, ()))
        current_week = max(weeks, default=0)
    sizes: Counter[int] = Counter()
    active: dict[int, Counter[int]] = defaultdict(Counter)
    for visitor, cohort in first_seen_week.items():
        sizes[cohort] += 1
        for week in set(active_weeks.get(visitor, ())):
            k = week - cohort
            if 0 <= k <= max_weeks:
                active[cohort][k] += 1
    result = []
    for cohort in sorted(sizes):
        observed = min(max_weeks, current_week - cohort)
        size = sizes[cohort]
        retention = tuple(active[cohort][k] / size for k in range(observed + 1))
        churn = 1.0 - retention[max_weeks] if observed == max_weeks else None
        result.append(CohortRetention(cohort=cohort, size=size, retention=retention, churn=churn))
    return tuple(result)


class ChannelTransition(Struct, frozen=True, kw_only=True):
    """Consecutive events of one visitor that moved from one channel to another."""

    from_channel: str
    to_channel: str
    count: int


class ChannelSwitching(Struct, frozen=True, kw_only=True):
    """``multi_channel``: share of visitors seen in ≥ 2 channels (Wilson); ``transitions``: the most
    frequent channel changes, most frequent first."""

    multi_channel: MetricEstimate
    transitions: tuple[ChannelTransition, ...]


def channel_switching(
    events_in_time_order: Iterable[tuple[Hashable, float, str]], top: int = 10
) -> ChannelSwitching:
    """Channel switching from ``(visitor, ts, channel)`` events, each visitor's in time order.

    Share = visitors with ≥ 2 distinct channels / visitors; a transition a → b (a ≠ b) is counted from
    each pair of consecutive events of one visitor. Streams: memory grows with visitors, not events.
    A visitor whose timestamps go backwards raises :class:`ValueError`.
    """
    last: dict[Hashable, tuple[float, str]] = {}
    channels: dict[Hashable, set[str]] = defaultdict(set)
    transitions: Counter[tuple[str, str]] = Counter()
    for visitor, ts, channel in events_in_time_order:
        previous = last.get(visitor)
        if previous is not None:
            if ts < previous[0]:
                raise ValueError(f"visitor {visitor!r}: events not in time order ({ts} after {previous[0]})")
            if channel != previous[1]:
                transitions[(previous[1], channel)] += 1
        last[visitor] = (ts, channel)
        channels[visitor].add(channel)
    multi = sum(1 for seen in channels.values() if len(seen) >= 2)
    ranked = sorted(transitions.items(), key=lambda item: (-item[1], item[0]))[:top]
    return ChannelSwitching(
        multi_channel=_rate(multi, len(channels)),
        transitions=tuple(ChannelTransition(from_channel=a, to_channel=b, count=c) for (a, b), c in ranked),
    )
