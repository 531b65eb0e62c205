"""UX per touchpoint and CX per variant, read from an experience's aggregates.

The ``ux_cx`` functions applied to the stored counts, sums and histograms. Median task time comes
from a log-spaced histogram (50 buckets per decade), so it is within one bucket — under 4.7 % — of
the exact median; its interval uses the distribution-free order-statistic ranks n/2 ∓ z·√n/2 read
from the same histogram.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated

from msgspec import Meta, Struct

from personalization.measurement.attribution import bucket_bounds
from personalization.measurement.results_counts import Counts
from personalization.measurement.stats import Z95, mean_interval
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

__all__ = ["CxVariant", "TaskTime", "UxVariant", "cx_variant", "histogram_quantile", "ux_variant"]

Interval = tuple[float, float]


class TaskTime(Struct, frozen=True, kw_only=True):
    """Task times in ms: median (histogram, ±4.7 %) with its order-statistic interval, geometric mean
    with the exponentiated t interval of log times (``interval``), arithmetic mean with a t interval."""

    n: Annotated[int, Meta(description="Timed tasks.")]
    median: Annotated[float, Meta(description="Median task time in ms (histogram, ±4.7 %).")] | None
    median_interval: (
        Annotated[Interval, Meta(description="95 % order-statistic interval of the median, `[low, high]`.")] | None
    )
    geometric_mean: Annotated[float, Meta(description="Geometric mean task time in ms.")] | None
    interval: (
        Annotated[
            Interval, Meta(description="95 % interval of the geometric mean (exponentiated t interval of log times).")
        ]
        | None
    )
    mean: Annotated[float, Meta(description="Arithmetic mean task time in ms.")] | None
    mean_interval: Annotated[Interval, Meta(description="95 % t interval of the arithmetic mean.")] | None


class UxVariant(Struct, frozen=True, kw_only=True):
    """UX metrics of one variant at one touchpoint. Abandonment = abandonments / (task events +
    abandonments); click-through = unique clickers here / unique visitors exposed to the variant."""

    task_success: Annotated[MetricEstimate, Meta(description="Share of tasks completed successfully.")]
    task_time: Annotated[TaskTime, Meta(description="Task durations.")]
    abandonment_rate: Annotated[MetricEstimate, Meta(description="Abandonments / (task events + abandonments).")]
    click_through_rate: Annotated[
        MetricEstimate, Meta(description="Unique clickers here / unique visitors exposed to the variant.")
    ]
    average_order_value: Annotated[MetricEstimate, Meta(description="Mean purchase value at this touchpoint.")]
    sus: Annotated[MetricEstimate, Meta(description="System Usability Scale score (0–100).")]
    unique_problems: Annotated[int, Meta(description="Distinct feedback problem tags reported.")]
    clicks: Annotated[int, Meta(description="`click` events.")]
    page_views: Annotated[int, Meta(description="`page_view` events.")]


class CxVariant(Struct, frozen=True, kw_only=True):
    """CX metrics of one variant across the journey (surveys and purchases attributed to it)."""

    nps: Annotated[MetricEstimate, Meta(description="Net Promoter Score of visitors of the variant.")]
    csat: Annotated[MetricEstimate, Meta(description="Customer satisfaction of visitors of the variant.")]
    ces: Annotated[MetricEstimate, Meta(description="Customer Effort Score of visitors of the variant.")]
    repeat_purchase_rate: Annotated[
        MetricEstimate, Meta(description="Share of the variant's buyers who bought more than once.")
    ]


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


def _task_time(counts: Counts, v: int) -> TaskTime:
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


def _sus(counts: Counts, v: int) -> MetricEstimate:
    n = counts.count(v, "sus_n")
    mean, interval = mean_interval(n, counts.get(v, "sus_sum"), counts.get(v, "sus_sumsq"))
    if interval is not None:  # clip to the scale, as ux_cx does for bounded scores
        interval = (max(0.0, interval[0]), min(100.0, interval[1]))
    return MetricEstimate(score=mean, interval=interval, n=n)


def ux_variant(counts: Counts, v: int, visitors: int, problems: int) -> UxVariant:
    """Variant ``v`` at one touchpoint, from that touchpoint's ``ux:<tp>`` hash."""
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


def _hist(counts: Counts, v: int, metric: str) -> dict[int, int]:
    return {int(s): int(c) for s, c in counts.with_prefix(v, f"{metric}:").items()}


def cx_variant(counts: Counts, v: int) -> CxVariant:
    """Variant ``v``'s CX metrics from the experience's ``all`` hash."""
    buyers = counts.count(v, "buyers")
    return CxVariant(
        nps=nps_from_histogram(_hist(counts, v, "nps")),
        csat=csat_from_histogram(_hist(counts, v, "csat")),
        ces=ces_from_histogram(_hist(counts, v, "ces")),
        repeat_purchase_rate=repeat_purchase_rate(min(counts.count(v, "repeat_buyers"), buyers), buyers),
    )
