"""Experiment results: the aggregates of :mod:`personalization.measurement.aggregation` turned into statistics.

Nothing is estimated here that :mod:`personalization.measurement.stats` or :mod:`personalization.measurement.ux_cx` does not
already define; this module only reads the counters (two pipelined round trips, whatever the number
of goals, channels, segments, days and touchpoints) and maps them onto those functions:

* goals — ``exposures`` are unique exposed visitors, ``conversions`` unique converters;
  :func:`~personalization.measurement.stats.compare_rates` gives rate (Wilson), uplift (delta method), p-value
  (pooled z-test) and chance to beat control (exact Beta sum, Gaussian at large counts). Variant 0
  is control: its uplift, p-value and chance to beat control are ``None``.
* value per exposed visitor (when the goal carries values) — Student-t mean interval, Welch p-value
  vs control, and CUPED (:func:`~personalization.measurement.stats.cuped_adjust`) when visitors had values for the
  goal before their first exposure; its interval and p-value apply the same t / Welch formulas to
  the adjusted mean and variance.
* sample-ratio mismatch — χ² of unique visitors per variant against the configured weights, flagged
  below :data:`~personalization.measurement.stats.SRM_THRESHOLD` (holdout visitors are not in the arms).
* UX per touchpoint and CX per variant — the ``ux_cx`` functions on the stored counts, sums and
  histograms. Median task time comes from a log-spaced histogram (50 buckets per decade), so it is
  within one bucket — under 4.7 % — of the exact median; its interval uses the distribution-free
  order-statistic ranks n/2 ∓ z·√n/2 read from the same histogram.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from msgspec import Struct
from redis.asyncio import Redis

from personalization.measurement.attribution import HOLDOUT_VARIANT, bucket_bounds
from personalization.measurement.goals import MAX_GOALS
from personalization.measurement.stats import (
    SRM_THRESHOLD,
    Z95,
    CupedSums,
    compare_rates,
    cuped_adjust,
    enough_data,
    mean_interval,
    srm_p_value,
    welch_p_value,
    wilson_interval,
)
from personalization.measurement.ux_cx import (
    MetricEstimate,
    abandonment_rate,
    average_order_value,
    ces_from_histogram,
    click_through_rate,
    csat_from_histogram,
    geometric_mean_from_log_sums,
    nps_from_histogram,
    repeat_purchase_rate,
    task_success,
)
from personalization.store.keys import agg_key
from personalization.types import Experience

__all__ = [
    "ExperimentResults",
    "GoalResult",
    "VariantResult",
    "ValueResult",
    "CupedValue",
    "TaskTime",
    "UxVariant",
    "CxVariant",
    "DayCounts",
    "experiment_results",
    "histogram_quantile",
]

Interval = tuple[float, float]


class CupedValue(Struct, frozen=True, kw_only=True):
    """Value per visitor after CUPED: θ (pooled over arms), adjusted mean, its t interval, Welch p."""

    theta: float
    mean: float
    interval: Interval | None
    p_value: float | None


class ValueResult(Struct, frozen=True, kw_only=True):
    """The goal's value summed per exposed visitor (0 for visitors without one)."""

    total: float
    mean: float | None
    interval: Interval | None
    p_value: float | None
    cuped: CupedValue | None = None


class VariantResult(Struct, frozen=True, kw_only=True):
    """One variant on one goal; variant 0 is control (no uplift, p-value or chance to beat control)."""

    variant: int
    exposures: int
    conversions: int
    rate: float | None
    interval: Interval | None
    uplift: float | None = None
    uplift_interval: Interval | None = None
    p_value: float | None = None
    chance_to_beat_control: float | None = None
    enough_data: bool = False
    value: ValueResult | None = None


class GoalResult(Struct, frozen=True, kw_only=True):
    variants: list[VariantResult]


class TaskTime(Struct, frozen=True, kw_only=True):
    """Task times in ms: median (histogram, ±4.7 %) with its order-statistic interval, geometric mean
    with the exponentiated t interval of log times (``interval``), arithmetic mean with a t interval."""

    n: int
    median: float | None
    median_interval: Interval | None
    geometric_mean: float | None
    interval: Interval | None
    mean: float | None
    mean_interval: Interval | None


class UxVariant(Struct, frozen=True, kw_only=True):
    """UX metrics of one variant at one touchpoint. Abandonment = abandonments / (task events +
    abandonments); click-through = unique clickers here / unique visitors exposed to the variant."""

    task_success: MetricEstimate
    task_time: TaskTime
    abandonment_rate: MetricEstimate
    click_through_rate: MetricEstimate
    average_order_value: MetricEstimate
    sus: MetricEstimate
    unique_problems: int
    clicks: int
    page_views: int


class CxVariant(Struct, frozen=True, kw_only=True):
    """CX metrics of one variant across the journey (surveys and purchases attributed to it)."""

    nps: MetricEstimate
    csat: MetricEstimate
    ces: MetricEstimate
    repeat_purchase_rate: MetricEstimate


class DayCounts(Struct, frozen=True, kw_only=True):
    """One UTC day, lists indexed by variant: new visitors and exposure entries that day, and per goal
    the visitors whose *first* conversion was that day and all conversion events that day."""

    visitors: list[int]
    exposures: list[int]
    converters: dict[str, list[int]]
    conversions: dict[str, list[int]]


class ExperimentResults(Struct, frozen=True, kw_only=True):
    """Everything ``GET /v1/experiences/{key}/results`` returns.

    ``visitors`` / ``exposures`` are per variant (unique visitors, exposure entries incl. anonymous
    ones); ``enough_data`` is true when every variant of the first goal has ≥ 100 visitors and ≥ 25
    conversions in both arms (Optimizely's rule; say "too young" otherwise).
    """

    experience: str
    srm_p_value: float | None
    srm_flag: bool
    enough_data: bool
    visitors: list[int]
    exposures: list[int]
    anonymous_exposures: int
    holdout_visitors: int
    variant_conflicts: int
    goals: dict[str, GoalResult]
    breakdowns: dict[str, dict[str, dict[str, GoalResult]]]
    daily: dict[str, DayCounts]
    ux: dict[str, dict[int, UxVariant]]
    cx: dict[int, CxVariant]
    #: Events not counted, by reason (``goal``: a goal the experience does not count; ``rate``:
    #: beyond the per-visitor conversion limit; ``survey_repeat``: a repeated survey answer).
    discarded: dict[str, int] = {}


# ------------------------------------------------------------------------------------------ parsing


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _number(value: bytes | str) -> float:
    text = _text(value)
    try:
        return int(text)
    except ValueError:
        return float(text)


class _Counts:
    """One aggregate hash split by variant label: ``get(v, "conv:signup")``."""

    def __init__(self, raw: Mapping[bytes | str, bytes | str] | None) -> None:
        self.top: dict[str, float] = {}
        self.by_variant: dict[str, dict[str, float]] = defaultdict(dict)
        for key, value in (raw or {}).items():
            label, sep, rest = _text(key).partition(":")
            if sep:
                self.by_variant[label][rest] = _number(value)
            else:
                self.top[label] = _number(value)

    def get(self, variant: int | str, name: str) -> float:
        return self.by_variant.get(str(variant), {}).get(name, 0)

    def count(self, variant: int | str, name: str) -> int:
        return int(self.get(variant, name))

    def has(self, name: str) -> bool:
        return any(name in fields for fields in self.by_variant.values())

    def with_prefix(self, variant: int | str, prefix: str) -> dict[str, float]:
        n = len(prefix)
        return {k[n:]: v for k, v in self.by_variant.get(str(variant), {}).items() if k.startswith(prefix)}


# ------------------------------------------------------------------------------------------ goals


def _sums_for(n: int, mean: float, variance: float) -> tuple[float, float]:
    """(Σy, Σy²) of n values with this mean and sample variance — to reuse the sums-based formulas."""
    total = mean * n
    return total, variance * (n - 1) + total * total / n


def _cuped(counts: _Counts, k: int, goal: str, n: list[int]) -> list[CupedValue] | None:
    if not counts.has(f"xsum:{goal}") or min(n) < 2:
        return None
    arms = [
        CupedSums(
            n=n[v],
            sum_y=counts.get(v, f"vsum:{goal}"),
            sum_x=counts.get(v, f"xsum:{goal}"),
            sum_x2=counts.get(v, f"xsumsq:{goal}"),
            sum_y2=counts.get(v, f"vsumsq:{goal}"),
            sum_xy=counts.get(v, f"xysum:{goal}"),
        )
        for v in range(k + 1)
    ]
    result = cuped_adjust(arms)
    sums = [_sums_for(a.n, a.mean, a.variance) for a in result.arms]
    out = []
    for v, arm in enumerate(result.arms):
        _, interval = mean_interval(arm.n, *sums[v])
        p = None if v == 0 else welch_p_value(n[0], *sums[0], arm.n, *sums[v])
        out.append(CupedValue(theta=result.theta, mean=arm.mean, interval=interval, p_value=p))
    return out


def _goal(counts: _Counts, k: int, goal: str, with_cuped: bool, has_value: bool) -> GoalResult:
    n = [counts.count(v, "visitors") for v in range(k + 1)]
    # Converters are attributed only to exposed visitors, so x ≤ n; min() guards expired state.
    x = [min(counts.count(v, f"conv:{goal}"), n[v]) for v in range(k + 1)]
    cuped = _cuped(counts, k, goal, n) if has_value and with_cuped else None
    variants = []
    for v in range(k + 1):
        value = None
        if has_value:
            s, ss = counts.get(v, f"vsum:{goal}"), counts.get(v, f"vsumsq:{goal}")
            mean, interval = mean_interval(n[v], s, ss)
            p = None
            if v > 0:
                s0, ss0 = counts.get(0, f"vsum:{goal}"), counts.get(0, f"vsumsq:{goal}")
                p = welch_p_value(n[0], s0, ss0, n[v], s, ss)
            value = ValueResult(
                total=float(s), mean=mean, interval=interval, p_value=p, cuped=cuped[v] if cuped else None
            )
        if v == 0:
            variants.append(
                VariantResult(
                    variant=0,
                    exposures=n[0],
                    conversions=x[0],
                    rate=x[0] / n[0] if n[0] else None,
                    interval=wilson_interval(x[0], n[0]) if n[0] else None,
                    enough_data=enough_data(n[0], x[0]),
                    value=value,
                )
            )
            continue
        c = compare_rates((x[0], n[0]), (x[v], n[v]))
        variants.append(
            VariantResult(
                variant=v,
                exposures=c.n,
                conversions=c.conversions,
                rate=c.rate,
                interval=c.interval,
                uplift=c.uplift,
                uplift_interval=c.uplift_interval,
                p_value=c.p_value,
                chance_to_beat_control=c.chance_to_beat_control,
                enough_data=c.enough_data,
                value=value,
            )
        )
    return GoalResult(variants=variants)


# ------------------------------------------------------------------------------------------ UX / CX


def histogram_quantile(hist: Mapping[int, int], rank: float) -> float | None:
    """The value at continuous rank ``rank`` (0 … n) of a duration histogram {bucket: count}.

    Buckets are walked in order; inside the bucket holding the rank the value is interpolated
    log-linearly between its bounds (linearly in bucket 0, which starts at 0).
    """
    n = sum(hist.values())
    if n == 0:
        return None
    rank = min(max(rank, 0.0), float(n))
    seen = 0
    for bucket in sorted(hist):
        count = hist[bucket]
        if count <= 0:
            continue
        if seen + count >= rank:
            low, high = bucket_bounds(bucket)
            f = (rank - seen) / count
            return low + f * (high - low) if low == 0.0 else low * (high / low) ** f
        seen += count
    return bucket_bounds(max(hist))[1]  # pragma: no cover - rank ≤ n always lands in a bucket


def _task_time(counts: _Counts, v: int) -> TaskTime:
    n = counts.count(v, "dur_n")
    hist = {int(b): int(c) for b, c in counts.with_prefix(v, "dur_b:").items()}
    median = median_interval = None
    if n:
        # Order statistic x_(r) sits at continuous rank r − ½; an even n averages the middle two.
        if n % 2:
            median = histogram_quantile(hist, n / 2)
        else:
            lower, upper = histogram_quantile(hist, n / 2 - 0.5), histogram_quantile(hist, n / 2 + 0.5)
            median = None if lower is None or upper is None else (lower + upper) / 2
        half = Z95 * math.sqrt(n) / 2
        j, k = math.floor(n / 2 - half), math.ceil(1 + n / 2 + half)
        if j >= 1 and k <= n:  # order statistics x_(j), x_(k); rank r sits at r − ½
            lo, hi = histogram_quantile(hist, j - 0.5), histogram_quantile(hist, k - 0.5)
            if lo is not None and hi is not None:
                median_interval = (lo, hi)
    gm = geometric_mean_from_log_sums(n, counts.get(v, "dur_lsum"), counts.get(v, "dur_lsumsq"))
    mean, mean_int = mean_interval(n, counts.get(v, "dur_sum"), counts.get(v, "dur_sumsq"))
    return TaskTime(
        n=n,
        median=median,
        median_interval=median_interval,
        geometric_mean=gm.score,
        interval=gm.interval,
        mean=mean,
        mean_interval=mean_int,
    )


def _sus(counts: _Counts, v: int) -> MetricEstimate:
    n = counts.count(v, "sus_n")
    mean, interval = mean_interval(n, counts.get(v, "sus_sum"), counts.get(v, "sus_sumsq"))
    if interval is not None:  # clip to the scale, as ux_cx does for bounded scores
        interval = (max(0.0, interval[0]), min(100.0, interval[1]))
    return MetricEstimate(score=mean, interval=interval, n=n)


def _ux(counts: _Counts, v: int, visitors: int, problems: int) -> UxVariant:
    tasks, abandoned = counts.count(v, "tasks"), counts.count(v, "abandoned")
    return UxVariant(
        task_success=task_success(counts.count(v, "task_ok"), tasks),
        task_time=_task_time(counts, v),
        abandonment_rate=abandonment_rate(tasks + abandoned, tasks),
        click_through_rate=click_through_rate(min(counts.count(v, "clickers"), visitors), visitors),
        average_order_value=average_order_value(
            float(counts.get(v, "revenue")), counts.count(v, "orders"), float(counts.get(v, "revenue_sq"))
        ),
        sus=_sus(counts, v),
        unique_problems=problems,
        clicks=counts.count(v, "clicks"),
        page_views=counts.count(v, "page_views"),
    )


def _hist(counts: _Counts, v: int, metric: str) -> dict[int, int]:
    return {int(s): int(c) for s, c in counts.with_prefix(v, f"{metric}:").items()}


def _cx(counts: _Counts, v: int) -> CxVariant:
    buyers = counts.count(v, "buyers")
    return CxVariant(
        nps=nps_from_histogram(_hist(counts, v, "nps")),
        csat=csat_from_histogram(_hist(counts, v, "csat")),
        ces=ces_from_histogram(_hist(counts, v, "ces")),
        repeat_purchase_rate=repeat_purchase_rate(min(counts.count(v, "repeat_buyers"), buyers), buyers),
    )


# ------------------------------------------------------------------------------------------ entry point


async def experiment_results(
    redis: Redis, experience: Experience, *, goals: Sequence[str] | None = None
) -> ExperimentResults:
    """Read an experience's aggregates and compute its results (two pipelined round trips).

    ``goals`` defaults to the experience's configured goals followed by any other goal seen in the
    aggregates (alphabetically).
    """
    key = experience.key
    k = len(experience.variants)
    pipe = redis.pipeline(transaction=False)
    pipe.smembers(agg_key(key, "dims"))
    pipe.smembers(agg_key(key, "goals"))
    pipe.smembers(agg_key(key, "tps"))
    pipe.hgetall(agg_key(key, "all"))
    dims_raw, goals_raw, tps_raw, all_raw = await pipe.execute()
    dims = sorted(_text(d) for d in dims_raw)
    tps = sorted(_text(t) for t in tps_raw)
    if goals is None:  # at most MAX_GOALS: data counted before goals were checked cannot flood a page
        seen = sorted(_text(g) for g in goals_raw)
        goal_list = list(dict.fromkeys([*experience.goals, *seen]))[: max(MAX_GOALS, len(experience.goals))]
    else:
        goal_list = list(goals)

    pipe = redis.pipeline(transaction=False)
    for dim in dims:
        pipe.hgetall(agg_key(key, dim))
    for tp in tps:
        pipe.hgetall(agg_key(key, f"ux:{tp}"))
    for tp in tps:
        for v in range(k + 1):
            pipe.scard(agg_key(key, f"problems:{v}:{tp}"))
    replies = await pipe.execute()
    dim_counts = {dim: _Counts(replies[i]) for i, dim in enumerate(dims)}
    ux_counts = {tp: _Counts(replies[len(dims) + i]) for i, tp in enumerate(tps)}
    problem_counts = replies[len(dims) + len(tps):]

    counts = _Counts(all_raw)
    visitors = [counts.count(v, "visitors") for v in range(k + 1)]
    srm = srm_p_value(visitors, experience.weights) if len(experience.weights) == k + 1 else None
    valued = {g: counts.has(f"vsum:{g}") for g in goal_list}  # a value block everywhere or nowhere
    goal_results = {g: _goal(counts, k, g, True, valued[g]) for g in goal_list}

    breakdowns: dict[str, dict[str, dict[str, GoalResult]]] = {"channel": {}, "segment": {}}
    daily: dict[str, DayCounts] = {}
    for dim, c in dim_counts.items():
        kind, _, name = dim.partition(":")
        if kind == "ch":
            breakdowns["channel"][name] = {g: _goal(c, k, g, False, valued[g]) for g in goal_list}
        elif kind == "seg":
            breakdowns["segment"][name] = {g: _goal(c, k, g, False, valued[g]) for g in goal_list}
        elif kind == "day":
            daily[name] = DayCounts(
                visitors=[c.count(v, "visitors") for v in range(k + 1)],
                exposures=[c.count(v, "exposures") for v in range(k + 1)],
                converters={g: [c.count(v, f"conv:{g}") for v in range(k + 1)] for g in goal_list},
                conversions={g: [c.count(v, f"events:{g}") for v in range(k + 1)] for g in goal_list},
            )

    ux: dict[str, dict[int, UxVariant]] = {}
    for i, tp in enumerate(tps):
        ux[tp] = {
            v: _ux(ux_counts[tp], v, visitors[v], int(problem_counts[i * (k + 1) + v])) for v in range(k + 1)
        }

    first = goal_results[goal_list[0]].variants if goal_list else []
    return ExperimentResults(
        experience=key,
        srm_p_value=srm,
        srm_flag=srm is not None and srm < SRM_THRESHOLD,
        enough_data=bool(first) and all(v.enough_data for v in first[1:]) and len(first) > 1,
        visitors=visitors,
        exposures=[counts.count(v, "exposures") for v in range(k + 1)],
        anonymous_exposures=sum(int(f.get("anonymous", 0)) for f in counts.by_variant.values()),
        holdout_visitors=counts.count(HOLDOUT_VARIANT, "visitors"),
        variant_conflicts=int(counts.top.get("variant_conflicts", 0)),
        goals=goal_results,
        breakdowns=breakdowns,
        daily=daily,
        ux=ux,
        cx={v: _cx(counts, v) for v in range(k + 1)},
        discarded={reason: int(n) for reason, n in sorted(counts.by_variant.get("discarded", {}).items())},
    )
