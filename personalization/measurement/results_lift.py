"""Personalization lift: did personalizing help? Everyone the experience treated against its holdout.

The question a marketer asks first is not "which variant wins" but "is personalizing better than
not personalizing". The holdout answers it: a random share of the audience that always sees the
baseline. By *intent to treat*, the treated arm is every visitor the experience assigned outside
the holdout, whatever variant they got — control included, since assignment (not the content
shown) is what was randomised. The aggregator counts each visitor once, in the arm of their first
exposure (assignment is sticky; a later exposure to another arm only counts ``variant_conflicts``),
so the arms' unique visitors and unique converters are disjoint and add up:

    treated n = Σ_v visitors_v,  treated x = Σ_v converters_v;  holdout = the ``h`` arm.

Per goal: each arm's rate with its Wilson interval, lift = rate_t / rate_h − 1 with the delta-method
interval (:func:`~personalization.measurement.stats.relative_uplift`), the pooled two-proportion
z-test p-value, the always-valid (sequential) interval and p-value of the same relative lift
(:func:`~personalization.measurement.sequential.sequential_rates`, safe to look at every day), and
the chance that the treated rate beats the holdout's (exact Beta posterior sum). With an empty arm
every comparison is ``None`` and :func:`lift_notes` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta, Struct

from personalization.measurement.attribution import HOLDOUT_VARIANT
from personalization.measurement.results_counts import Counts
from personalization.measurement.sequential import sequential_rates
from personalization.measurement.stats import (
    chance_to_beat_control,
    relative_uplift,
    two_proportion_p_value,
    wilson_interval,
)
from personalization.types import Experience

__all__ = ["ArmRate", "PersonalizationLift", "goal_lift", "has_holdout", "lift_notes", "personalization_lift"]

Interval = tuple[float, float]


class ArmRate(Struct, frozen=True, kw_only=True):
    """One arm on one goal: unique visitors, unique converters, rate and its Wilson interval."""

    visitors: Annotated[int, Meta(description="Unique visitors in the arm.")]
    conversions: Annotated[int, Meta(description="Unique visitors in the arm who converted.")]
    rate: Annotated[float, Meta(description="`conversions` / `visitors`; null without visitors.")] | None
    interval: Annotated[Interval, Meta(description="95 % Wilson interval of `rate`.")] | None


class PersonalizationLift(Struct, frozen=True, kw_only=True):
    """The treated arm (every assigned visitor outside the holdout) against the holdout on one goal.

    ``lift`` is relative (0.25 = +25 %); ``lift_interval`` the fixed-horizon 95 % delta-method interval,
    ``sequential_interval`` / ``sequential_p_value`` the always-valid ones (valid under continuous
    monitoring); ``None`` where undefined (an empty arm, a holdout rate of 0).
    """

    treated: Annotated[ArmRate, Meta(description="Every assigned visitor outside the holdout.")]
    holdout: Annotated[ArmRate, Meta(description="The visitors of the holdout.")]
    lift: Annotated[float, Meta(description="Relative lift of treated over holdout (0.25 = +25 %).")] | None
    lift_interval: Annotated[Interval, Meta(description="Fixed-horizon 95 % delta-method interval of `lift`.")] | None
    p_value: Annotated[float, Meta(description="Fixed-horizon p-value of the difference.")] | None
    sequential_interval: (
        Annotated[
            Interval, Meta(description="Always-valid 95 % interval of `lift` (valid under continuous monitoring).")
        ]
        | None
    )
    sequential_p_value: Annotated[float, Meta(description="Always-valid p-value.")] | None
    chance_to_beat_holdout: (
        Annotated[float, Meta(description="Bayesian probability that treated beats holdout.")] | None
    )


def _arm(visitors: int, conversions: int) -> ArmRate:
    return ArmRate(
        visitors=visitors,
        conversions=conversions,
        rate=conversions / visitors if visitors else None,
        interval=wilson_interval(conversions, visitors) if visitors else None,
    )


def has_holdout(experience: Experience, counts: Counts) -> bool:
    """Whether the experience keeps a holdout now, or counted holdout visitors under an earlier set-up."""
    return experience.holdout > 0 or counts.count(HOLDOUT_VARIANT, "visitors") > 0


def goal_lift(counts: Counts, k: int, goal: str) -> PersonalizationLift:
    """Treated (arms 0…k) vs holdout on ``goal``; every comparison ``None`` while an arm is empty."""
    arms = [str(v) for v in range(k + 1)]
    n_t = sum(counts.count(v, "visitors") for v in arms)
    # Converters are attributed only to exposed visitors (x ≤ n per arm); min() guards expired state.
    x_t = sum(min(counts.count(v, f"conv:{goal}"), counts.count(v, "visitors")) for v in arms)
    n_h = counts.count(HOLDOUT_VARIANT, "visitors")
    x_h = min(counts.count(HOLDOUT_VARIANT, f"conv:{goal}"), n_h)
    lift = lift_interval = p_value = sequential = chance = None
    if n_t and n_h:
        lift, lift_interval = relative_uplift(x_h, n_h, x_t, n_t)
        p_value = two_proportion_p_value(x_h, n_h, x_t, n_t)
        sequential = sequential_rates(x_h, n_h, x_t, n_t)
        chance = chance_to_beat_control(x_h, n_h, x_t, n_t)
    return PersonalizationLift(
        treated=_arm(n_t, x_t),
        holdout=_arm(n_h, x_h),
        lift=lift,
        lift_interval=lift_interval,
        p_value=p_value,
        sequential_interval=sequential.interval if sequential else None,
        sequential_p_value=sequential.p_value if sequential else None,
        chance_to_beat_holdout=chance,
    )


def personalization_lift(
    experience: Experience, counts: Counts, goals: Sequence[str]
) -> dict[str, PersonalizationLift]:
    """Per goal, treated vs holdout from the experience's ``all`` hash; ``{}`` without a holdout."""
    if not has_holdout(experience, counts):
        return {}
    k = len(experience.variants)
    return {goal: goal_lift(counts, k, goal) for goal in goals}


def lift_notes(lift: dict[str, PersonalizationLift]) -> list[str]:
    """Why the lift is missing, when an arm is empty (said once, not per goal)."""
    first = next(iter(lift.values()), None)
    if first is None:
        return []
    treated, holdout = first.treated.visitors, first.holdout.visitors
    if treated and not holdout:
        return ["holdout has no visitors yet: personalization_lift compares nothing until it does"]
    if holdout and not treated:
        return ["no visitor outside the holdout yet: personalization_lift compares nothing until there is one"]
    return []
