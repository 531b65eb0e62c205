"""Goal results per variant: conversion rates against control, value per visitor, CUPED, BH adjustment.

Per goal, ``visitors`` are unique exposed visitors (``exposures`` is the same number under its old
name, kept for one release), ``conversions`` unique converters;
:func:`~personalization.measurement.stats.compare_rates` gives rate (Wilson), uplift (delta method),
p-value (pooled z-test) and chance to beat control (exact Beta sum, Gaussian at large counts).
Next to the fixed-horizon uplift interval, ``sequential_interval`` / ``sequential_p_value`` stay valid
under continuous monitoring (:func:`~personalization.measurement.sequential.sequential_rates`).
Variant 0 is control: its uplift, p-value and chance to beat control are ``None``. So are a
variant's when either arm has no visitors — a comparison with an empty arm is the prior alone, not
evidence (the reason goes in the results' ``notes``, :func:`empty_arm_notes`).

``adjusted_p_value`` is the Benjamini–Hochberg adjustment over every variant × *configured* goal
of the experience (:func:`~personalization.measurement.sequential.adjusted_p_values`); goals only
seen in events — names a client may invent — are neither adjusted nor counted in the family.

Value per exposed visitor (when the goal carries values): Student-t mean interval, Welch p-value vs
control, and CUPED (:func:`~personalization.measurement.stats.cuped_adjust`) when visitors had
values for the goal before their first exposure; its interval and p-value apply the same t / Welch
formulas to the adjusted mean and variance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

from msgspec import Meta, Struct, structs

from personalization.measurement.regression_adjustment import AdjustedRate
from personalization.measurement.results_counts import Counts
from personalization.measurement.sequential import adjusted_p_values, sequential_rates
from personalization.measurement.stats import (
    CupedSums,
    compare_rates,
    cuped_adjust,
    enough_data,
    mean_interval,
    welch_p_value,
    wilson_interval,
)
from personalization.types import Experience

__all__ = [
    "CupedValue",
    "GoalResult",
    "ValueResult",
    "VariantResult",
    "empty_arm_notes",
    "goal_result",
    "with_adjusted_p_values",
]

Interval = tuple[float, float]


class CupedValue(Struct, frozen=True, kw_only=True):
    """Value per visitor after CUPED: θ (pooled over arms), adjusted mean, its t interval, Welch p."""

    theta: Annotated[float, Meta(description="The CUPED coefficient θ, pooled over the arms.")]
    mean: Annotated[float, Meta(description="Value per visitor after CUPED adjustment.")]
    interval: Annotated[Interval, Meta(description="95 % t interval of the adjusted mean, `[low, high]`.")] | None
    p_value: (
        Annotated[
            float, Meta(description="Welch t-test p-value of the adjusted difference vs control; null for control.")
        ]
        | None
    )


class ValueResult(Struct, frozen=True, kw_only=True):
    """The goal's value summed per exposed visitor (0 for visitors without one)."""

    total: Annotated[float, Meta(description="The goal's value summed over the variant's exposed visitors.")]
    mean: (
        Annotated[
            float, Meta(description="Value per exposed visitor (0 for visitors without one); null without visitors.")
        ]
        | None
    )
    interval: Annotated[Interval, Meta(description="95 % interval of `mean`, `[low, high]`.")] | None
    p_value: (
        Annotated[float, Meta(description="p-value of the difference in `mean` vs control; null for control.")] | None
    )
    cuped: (
        Annotated[
            CupedValue,
            Meta(description="The same value after CUPED variance reduction, when pre-exposure data exists."),
        ]
        | None
    ) = None


class VariantResult(Struct, frozen=True, kw_only=True):
    """One variant on one goal; variant 0 is control (no uplift, p-value or chance to beat control).

    ``visitors`` are the unique visitors exposed to the variant; ``exposures`` is the same count under
    its old name, kept as an alias for one release. ``adjusted_p_value`` is ``p_value`` after
    Benjamini–Hochberg over variants × configured goals (in a breakdown: over that breakdown's cells ×
    configured goals × variants; ``None`` for goals the experience does not configure).
    ``cuped`` / ``cupac``: the rate adjusted for pre-exposure conversions / for the visitor's segment
    (:mod:`~personalization.measurement.results_adjusted`); the unadjusted numbers stay as they are.
    """

    variant: Annotated[int, Meta(description="Variant index; 0 is control.")]
    exposures: Annotated[
        int,
        Meta(description="Deprecated alias of `visitors` (unique visitors, not exposure entries); kept for one release."),
    ]
    visitors: Annotated[int, Meta(description="Unique visitors exposed to the variant.")]
    conversions: Annotated[int, Meta(description="Unique visitors of the variant who converted on the goal.")]
    rate: Annotated[float, Meta(description="`conversions` / `visitors`; null without visitors.")] | None
    interval: Annotated[Interval, Meta(description="95 % Wilson interval of `rate`, `[low, high]`.")] | None
    uplift: (
        Annotated[float, Meta(description="Relative uplift of `rate` over control (0.25 = +25 %); null for control.")]
        | None
    ) = None
    uplift_interval: Annotated[Interval, Meta(description="95 % interval of `uplift`, `[low, high]`.")] | None = None
    p_value: Annotated[float, Meta(description="Two-sided p-value of the difference vs control.")] | None = None
    adjusted_p_value: (
        Annotated[
            float, Meta(description="`p_value` after Benjamini–Hochberg adjustment over the experience's comparisons.")
        ]
        | None
    ) = None
    sequential_interval: (
        Annotated[
            Interval,
            Meta(
                description="Always-valid interval and p-value of the uplift (valid however often results are looked at)."
            ),
        ]
        | None
    ) = None
    sequential_p_value: (
        Annotated[float, Meta(description="Always-valid p-value (valid however often results are looked at).")] | None
    ) = None
    chance_to_beat_control: (
        Annotated[float, Meta(description="Bayesian probability that this variant's rate beats control.")] | None
    ) = None
    enough_data: Annotated[
        bool, Meta(description="True when this variant and control each have ≥ 100 visitors and ≥ 25 conversions.")
    ] = False
    value: (
        Annotated[
            ValueResult, Meta(description="The goal's value (e.g. revenue) per visitor, when conversions carry one.")
        ]
        | None
    ) = None
    cuped: (
        Annotated[
            AdjustedRate, Meta(description="The rate after CUPED regression adjustment on pre-exposure behaviour.")
        ]
        | None
    ) = None
    cupac: (
        Annotated[
            AdjustedRate, Meta(description="The rate after CUPAC adjustment (a model's prediction as covariate).")
        ]
        | None
    ) = None


class GoalResult(Struct, frozen=True, kw_only=True):
    variants: Annotated[list[VariantResult], Meta(description="One result per variant, control first.")]


def _sums_for(n: int, mean: float, variance: float) -> tuple[float, float]:
    """(Σy, Σy²) of n values with this mean and sample variance — to reuse the sums-based formulas."""
    total = mean * n
    return total, variance * (n - 1) + total * total / n


def _cuped(counts: Counts, k: int, goal: str, n: list[int]) -> list[CupedValue] | None:
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


def _value(counts: Counts, v: int, goal: str, n: list[int], cuped: list[CupedValue] | None) -> ValueResult:
    s, ss = counts.get(v, f"vsum:{goal}"), counts.get(v, f"vsumsq:{goal}")
    mean, interval = mean_interval(n[v], s, ss)
    p = None
    if v > 0:
        s0, ss0 = counts.get(0, f"vsum:{goal}"), counts.get(0, f"vsumsq:{goal}")
        p = welch_p_value(n[0], s0, ss0, n[v], s, ss)
    return ValueResult(total=float(s), mean=mean, interval=interval, p_value=p, cuped=cuped[v] if cuped else None)


def goal_result(counts: Counts, k: int, goal: str, with_cuped: bool, has_value: bool) -> GoalResult:
    """Variants 0…k on ``goal`` from one aggregate hash (``all`` or a breakdown's)."""
    n = [counts.count(v, "visitors") for v in range(k + 1)]
    # Converters are attributed only to exposed visitors, so x ≤ n; min() guards expired state.
    x = [min(counts.count(v, f"conv:{goal}"), n[v]) for v in range(k + 1)]
    cuped = _cuped(counts, k, goal, n) if has_value and with_cuped else None
    variants = []
    for v in range(k + 1):
        value = _value(counts, v, goal, n, cuped) if has_value else None
        if v == 0:
            variants.append(
                VariantResult(
                    variant=0,
                    exposures=n[0],
                    visitors=n[0],
                    conversions=x[0],
                    rate=x[0] / n[0] if n[0] else None,
                    interval=wilson_interval(x[0], n[0]) if n[0] else None,
                    enough_data=enough_data(n[0], x[0]),
                    value=value,
                )
            )
            continue
        c = compare_rates((x[0], n[0]), (x[v], n[v]))
        comparable = n[0] > 0 and n[v] > 0  # never a verdict against (or for) an arm nobody saw
        sequential = sequential_rates(x[0], n[0], x[v], n[v]) if comparable else None
        variants.append(
            VariantResult(
                variant=v,
                exposures=c.n,
                visitors=c.n,
                conversions=c.conversions,
                rate=c.rate,
                interval=c.interval,
                uplift=c.uplift if comparable else None,
                uplift_interval=c.uplift_interval if comparable else None,
                p_value=c.p_value if comparable else None,
                sequential_interval=sequential.interval if sequential else None,
                sequential_p_value=sequential.p_value if sequential else None,
                chance_to_beat_control=c.chance_to_beat_control if comparable else None,
                enough_data=c.enough_data,
                value=value,
            )
        )
    return GoalResult(variants=variants)


def with_adjusted_p_values(goals: Mapping[str, GoalResult], configured: Sequence[str]) -> dict[str, GoalResult]:
    """``goals`` with ``adjusted_p_value`` set: Benjamini–Hochberg over variants × configured goals."""
    family = [(g, i) for g in configured if g in goals for i in range(1, len(goals[g].variants))]
    adjusted = adjusted_p_values([goals[g].variants[i].p_value for g, i in family])
    out = dict(goals)
    for (g, i), p in zip(family, adjusted, strict=True):
        variants = list(out[g].variants)
        variants[i] = structs.replace(variants[i], adjusted_p_value=p)
        out[g] = GoalResult(variants=variants)
    return out


def empty_arm_notes(experience: Experience, visitors: Sequence[int]) -> list[str]:
    """Why comparisons are missing: an arm without visitors is compared with nothing (nor against)."""
    if not visitors or not any(visitors):
        return []
    notes = []
    if visitors[0] == 0:
        if experience.type == "personalization":
            served = "variant 1" if len(visitors) == 2 else "its variants"
            notes.append(
                f"control has no visitors: a personalization experience serves {served} to its whole "
                "audience; compare with the holdout (personalization_lift)"
            )
        else:
            notes.append("control has no visitors: no uplift, p-value or chance to beat control is computed")
    else:
        for v, n in enumerate(visitors[1:], start=1):
            if n == 0:
                notes.append(f"variant {v} has no visitors: it is not compared with control")
    return notes
