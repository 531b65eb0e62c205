"""Program-level lift: all of personalization against the global holdout, per goal and per CX metric.

The global holdout (:mod:`personalization.decision.global_holdout`) logs one exposure of the reserved
experience ``_global`` per personalize request — treated visitors as variant 1, held-out ones in the
holdout arm ``h`` — and the aggregator counts it like any experience. So the program's lift is that
experience's aggregates read with the same functions as an experience's ``personalization_lift``:

* per goal (the space's declared goals): :func:`~personalization.measurement.results_lift.personalization_lift`;
* NPS, CSAT, CES: treated − holdout from the survey histograms. NPS on the +1/0/−1 score
  (difference × 100, se² = Σ var/n with var = P + D − (P − D)²), CSAT as the difference of the shares of
  4s and 5s (× 100) with Newcombe's hybrid score interval (built from the two Wilson intervals, proper
  at small n), CES as a difference of means with Welch's interval (lower CES is better: a negative
  difference is an improvement);
* retention: visitors who came back on a later day (``<v>:returning``) / visitors, Wilson per arm,
  relative lift by the delta method and the pooled z-test.

``notes`` says when nothing can be compared: no global holdout configured, or an arm without visitors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta, Struct
from redis.asyncio import Redis
from scipy import stats as sps

from personalization.decision.global_holdout import GLOBAL_EXPERIENCE
from personalization.measurement.attribution import HOLDOUT_VARIANT
from personalization.measurement.results_counts import Counts
from personalization.measurement.results_lift import PersonalizationLift, goal_lift
from personalization.measurement.stats import (
    Z95,
    relative_uplift,
    two_proportion_p_value,
    wilson_interval,
)
from personalization.measurement.ux_cx import (
    MetricEstimate,
    ces_from_histogram,
    csat_from_histogram,
    nps_from_histogram,
)
from personalization.store.keys import agg_key

__all__ = ["CxDifference", "ProgramLift", "Retention", "lift_of_counts", "program_lift"]

TREATED = "1"

Interval = tuple[float, float]


class CxDifference(Struct, frozen=True, kw_only=True):
    """A CX score of the treated and the holdout, and treated − holdout with a 95 % interval."""

    treated: Annotated[MetricEstimate, Meta(description="The score of treated visitors.")]
    holdout: Annotated[MetricEstimate, Meta(description="The score of holdout visitors.")]
    difference: Annotated[float, Meta(description="treated − holdout; null when either arm has no answers.")] | None
    difference_interval: Annotated[Interval, Meta(description="95 % interval of `difference`, `[low, high]`.")] | None
    p_value: Annotated[float, Meta(description="p-value of `difference`.")] | None


class Retention(Struct, frozen=True, kw_only=True):
    """Share of visitors who came back on a later day, per arm (Wilson), and the relative lift."""

    treated: Annotated[MetricEstimate, Meta(description="Share of treated visitors who came back on a later day.")]
    holdout: Annotated[MetricEstimate, Meta(description="Share of holdout visitors who came back on a later day.")]
    lift: Annotated[float, Meta(description="Relative lift of treated over holdout (0.1 = +10 %).")] | None
    lift_interval: Annotated[Interval, Meta(description="95 % interval of `lift`, `[low, high]`.")] | None
    p_value: Annotated[float, Meta(description="p-value of the difference.")] | None


class ProgramLift(Struct, frozen=True, kw_only=True):
    """``GET /v1/lift``: everything Vary personalizes against the visitors it leaves alone."""

    experience: Annotated[str, Meta(description="The experience whose holdout defines the comparison.")]
    share: Annotated[
        float, Meta(description="Share of visitors in the global holdout (never personalized), as configured.")
    ]
    treated_visitors: Annotated[int, Meta(description="Visitors personalized (outside the holdout).")]
    holdout_visitors: Annotated[int, Meta(description="Visitors left alone (the holdout).")]
    goals: Annotated[dict[str, PersonalizationLift], Meta(description="Goal → treated vs holdout on it.")]
    nps: Annotated[CxDifference, Meta(description="NPS of treated vs holdout.")]
    csat: Annotated[CxDifference, Meta(description="CSAT of treated vs holdout.")]
    ces: Annotated[CxDifference, Meta(description="CES of treated vs holdout.")]
    retention: Annotated[Retention, Meta(description="Return visits of treated vs holdout.")]
    notes: Annotated[list[str], Meta(description="Why a comparison is null, in words.")] = []


def _hist(counts: Counts, arm: str, metric: str) -> dict[int, int]:
    return {int(s): int(c) for s, c in counts.with_prefix(arm, f"{metric}:").items()}


def _z(estimate: float, se: float) -> tuple[Interval | None, float | None]:
    if not se > 0.0:
        return None, None
    return (estimate - Z95 * se, estimate + Z95 * se), float(2.0 * sps.norm.sf(abs(estimate) / se))


def _nps(counts: Counts) -> CxDifference:
    arms = [_hist(counts, a, "nps") for a in (TREATED, HOLDOUT_VARIANT)]
    estimates = [nps_from_histogram(h) for h in arms]
    diff = interval = p = None
    if all(e.n for e in estimates):
        moments = []
        for h, e in zip(arms, estimates):
            promoters = sum(c for s, c in h.items() if s >= 9) / e.n
            detractors = sum(c for s, c in h.items() if s <= 6) / e.n
            moments.append((promoters - detractors, promoters + detractors - (promoters - detractors) ** 2, e.n))
        (m_t, v_t, n_t), (m_h, v_h, n_h) = moments
        diff = 100.0 * (m_t - m_h)
        interval, p = _z(diff, 100.0 * math.sqrt(v_t / n_t + v_h / n_h))
    return CxDifference(treated=estimates[0], holdout=estimates[1], difference=diff, difference_interval=interval, p_value=p)


def _csat(counts: Counts) -> CxDifference:
    arms = [_hist(counts, a, "csat") for a in (TREATED, HOLDOUT_VARIANT)]
    estimates = [csat_from_histogram(h) for h in arms]
    diff = interval = p = None
    if all(e.n for e in estimates):
        (x_t, n_t), (x_h, n_h) = [(sum(c for s, c in h.items() if s >= 4), e.n) for h, e in zip(arms, estimates)]
        p_t, p_h = x_t / n_t, x_h / n_h
        (l_t, u_t), (l_h, u_h) = wilson_interval(x_t, n_t), wilson_interval(x_h, n_h)
        d = p_t - p_h  # Newcombe (1998) method 10: the hybrid score interval of a difference of proportions
        lo = d - math.sqrt((p_t - l_t) ** 2 + (u_h - p_h) ** 2)
        hi = d + math.sqrt((u_t - p_t) ** 2 + (p_h - l_h) ** 2)
        diff, interval, p = 100.0 * d, (100.0 * lo, 100.0 * hi), two_proportion_p_value(x_h, n_h, x_t, n_t)
    return CxDifference(treated=estimates[0], holdout=estimates[1], difference=diff, difference_interval=interval, p_value=p)


def _ces(counts: Counts) -> CxDifference:
    arms = [_hist(counts, a, "ces") for a in (TREATED, HOLDOUT_VARIANT)]
    estimates = [ces_from_histogram(h) for h in arms]
    diff = interval = p = None
    if all(e.n >= 2 for e in estimates):
        moments = []
        for h, e in zip(arms, estimates):
            total, total_sq = sum(s * c for s, c in h.items()), sum(s * s * c for s, c in h.items())
            moments.append((total / e.n, max(0.0, (total_sq - total * total / e.n) / (e.n - 1)) / e.n, e.n))
        (m_t, v_t, n_t), (m_h, v_h, n_h) = moments
        diff, se2 = m_t - m_h, v_t + v_h
        if se2 > 0.0:  # Welch–Satterthwaite degrees of freedom
            df = se2**2 / (v_t**2 / (n_t - 1) + v_h**2 / (n_h - 1))
            q = float(sps.t.ppf(0.975, df))
            interval = (diff - q * math.sqrt(se2), diff + q * math.sqrt(se2))
            p = float(2.0 * sps.t.sf(abs(diff) / math.sqrt(se2), df))
    return CxDifference(treated=estimates[0], holdout=estimates[1], difference=diff, difference_interval=interval, p_value=p)


def _share(returning: int, visitors: int) -> MetricEstimate:
    if not visitors:
        return MetricEstimate(score=None, interval=None, n=0)
    return MetricEstimate(score=returning / visitors, interval=wilson_interval(returning, visitors), n=visitors)


def _retention(counts: Counts) -> Retention:
    (r_t, n_t), (r_h, n_h) = [
        (min(counts.count(a, "returning"), counts.count(a, "visitors")), counts.count(a, "visitors"))
        for a in (TREATED, HOLDOUT_VARIANT)
    ]
    lift, interval = relative_uplift(r_h, n_h, r_t, n_t)
    return Retention(treated=_share(r_t, n_t), holdout=_share(r_h, n_h), lift=lift, lift_interval=interval,
                     p_value=two_proportion_p_value(r_h, n_h, r_t, n_t))


def lift_of_counts(counts: Counts, share: float, goals: Sequence[str]) -> ProgramLift:
    """The program lift from the ``_global`` experience's ``all`` hash (pure: no I/O). ``share`` is the
    global holdout in force (0: none configured)."""
    treated, held = counts.count(TREATED, "visitors"), counts.count(HOLDOUT_VARIANT, "visitors")
    notes = []
    if share <= 0.0:
        notes.append("no global holdout is configured (varySettings globalHoldout or VARY_GLOBAL_HOLDOUT): "
                     "every visitor is personalized, so there is nobody to compare with")
    if not held:
        notes.append("the global holdout has no visitors yet: nothing is compared until it does")
    if not treated:
        notes.append("no personalized visitor yet: nothing is compared until there is one")
    return ProgramLift(
        experience=GLOBAL_EXPERIENCE, share=share, treated_visitors=treated, holdout_visitors=held,
        goals={g: goal_lift(counts, 1, g) for g in goals},  # arms 0…1: the treated are variant 1
        nps=_nps(counts), csat=_csat(counts), ces=_ces(counts), retention=_retention(counts), notes=notes,
    )


async def program_lift(redis: Redis, share: float, goals: Sequence[str]) -> ProgramLift:
    """Read the ``_global`` aggregates (one round trip) and compare treated with the global holdout."""
    return lift_of_counts(Counts(await redis.hgetall(agg_key(GLOBAL_EXPERIENCE, "all"))), share, goals)
