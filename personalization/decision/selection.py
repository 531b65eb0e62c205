"""Choosing a variant: audience match, traffic allocation, holdout, weights — and saying why.

All pure functions. Hashing is GrowthBook's (hash v2 of ``experience key`` + visitor id), so an
assignment is a function of the visitor id alone: every worker, and GrowthBook itself, computes the
same one with no shared state. Sticky assignments from the profile win over the hash, so a visitor
keeps their variant when a marketer changes the weights mid-flight (GrowthBook's sticky bucketing).

Order of the checks, for a visitor matched by the audience:

1. sticky assignment → that variant (if it still exists)
2. traffic allocation: ``bucket_ranges(k+1, coverage=traffic_allocation, weights)``; a hash outside
   every range → not in the experience (baseline, no experience logged)
3. holdout: a second, independent hash (seed ``<key>:holdout``) below ``holdout`` → control, flagged
4. the variant whose range holds the hash

Phases: from phase 2 on (:mod:`personalization.decision.phases`), sticky assignments are kept under
``phase_key(key, n)`` (``hero@p2``), so a set-up edit that starts a new phase re-buckets everyone
(GrowthBook re-randomises on a new phase) instead of keeping visitors in variants of the old set-up.

Layers (GrowthBook namespaces): experiences sharing ``Experience.layer`` each own a disjoint
``layer_range`` of it (content compiles equal shares when none is given), and a visitor is in the
experience whose range holds ``in_namespace``'s hash of the layer — v1 of ``"__" + layer`` and the
visitor id, GrowthBook's own — so a visitor is in at most one experience of a layer, across every
entry of a page, and a GrowthBook SDK given the same namespace agrees. The check runs once the
audience matched and before anything else (sticky assignments included: an assignment from before
the layer existed must not put a visitor in two of its experiences); outside the range the visitor
gets the baseline with a reason naming the layer, and the next experience on the entry is not tried
(the first whose audience matches decides, layered or not). Inside, the experience's own hash and
weights split its share as they would split all traffic.

Guardrail pauses: a visitor assigned a variant a guardrail paused (``Experience.paused``) keeps the
assignment — the exposure is logged under it, intent to treat — but is served the baseline, with the
pause's reason first in ``reason`` (``decide()`` serves the baseline entry).

``propensity`` = P(served variant | entered the experience): control ``h + (1−h)·w₀``, variant
``(1−h)·wᵢ``. For a sticky assignment it is the propensity under the current weights (what the
logging policy would do now), which is what off-policy estimators expect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from personalization.decision.audience_explain import explain_condition
from personalization.decision.audiences import eval_condition
from personalization.decision.bucketing import (
    bucket_hash,
    bucket_ranges,
    choose_variation,
    in_namespace,
)
from personalization.decision.frequency import cap_reached
from personalization.decision.ninetailed_bucketing import assign_ninetailed
from personalization.decision.plans import (
    HOLDOUT_SEED,
    HashedPlan,
    experience_plan,
    variant_propensity,
)
from personalization.decision.plans import describe_variant as _describe
from personalization.decision.policy import (
    action_probabilities,
    choose_action,
    uniform_from_key,
)
from personalization.seams import ExperiencePolicy, FeatureRow, RewardModel
from personalization.types import Assignment, Experience

__all__ = [
    "assign_variant",
    "assign_bandit",
    "select_experience",
    "variant_propensity",
    "layer_miss",
    "HOLDOUT_SEED",
    "HOLDOUT_STICKY",
]

#: Stored as the sticky assignment of a held-out visitor, so they stay held out (and flagged).
HOLDOUT_STICKY = -1
#: Built-in types assigned by hashing; ``bandit`` has its own path, any other type is a plugin's policy.
_HASHED_TYPES = frozenset({"personalization", "ab_test"})
_NO_PLUGIN_POLICIES: Mapping[str, ExperiencePolicy] = MappingProxyType({})


@lru_cache(maxsize=4096)
def _ranges(k: int, coverage: float, weights: tuple[float, ...]) -> tuple[tuple[float, float], ...]:
    """``bucket_ranges`` of an experience: a function of immutable fields only, so computed once."""
    return tuple(bucket_ranges(k, coverage, list(weights)))


def layer_miss(experience: Experience, visitor_id: str) -> str | None:
    """Why the visitor is outside the experience's share of its layer; ``None`` when inside (or no layer).

    An experience with a layer but no range (content always fills one) has no share: exclusivity first.
    """
    layer = experience.layer
    if layer is None:
        return None
    share = experience.layer_range
    if share is None:
        return f"layer {layer!r}: {experience.key!r} has no range in it, so no visitor enters"
    start, end = share
    if in_namespace(visitor_id, (layer, start, end)):
        return None
    return (
        f"layer {layer!r}: the visitor is outside {experience.key!r}'s range "
        f"[{start:g}, {end:g}), which keeps the layer's experiences mutually exclusive"
    )


def assign_variant(
    experience: Experience, visitor_id: str, sticky: int | None = None
) -> Assignment:
    """Bucket one visitor who matched the audience (steps 1–4 of the module docstring)."""
    plan = experience_plan(experience, _HASHED_TYPES).hashed
    if plan is not None and (sticky is None or type(sticky) is int):
        entered, variant, holdout, propensity, reason = _assign_hashed(plan, visitor_id, sticky)
        return _hashed_assignment(experience, entered, variant, holdout, propensity, reason)
    return _assign_unplanned(experience, visitor_id, sticky)


def _assign_unplanned(experience: Experience, visitor_id: str, sticky: int | None) -> Assignment:
    """``assign_variant`` computed from the experience itself: for an experience without a
    :class:`~personalization.decision.plans.HashedPlan` (weights that do not fit its variants, a
    non-hashed type) or a sticky value that is not an int; the reference the plans are tested against."""
    k = len(experience.variants) + 1
    # 1. sticky assignment (HOLDOUT_STICKY marks a visitor who was held out)
    if sticky == HOLDOUT_STICKY:
        return _entered(experience, 0, True, "sticky: held out on an earlier visit (control)")
    if sticky is not None and 0 <= sticky < k:
        return _entered(
            experience, sticky, False, f"sticky: {_describe(sticky, experience)} assigned on an earlier visit"
        )
    n = bucket_hash(experience.key, visitor_id, 2)
    if n is None:  # pragma: no cover - version 2 always hashes
        n = 0.0
    # 2. traffic allocation
    weights = experience.weights
    ranges = _ranges(k, experience.traffic_allocation, weights if type(weights) is tuple else tuple(weights))
    variant = choose_variation(n, ranges)
    if variant < 0:
        return Assignment(
            experience=None,
            variant=0,
            holdout=False,
            propensity=1.0,
            reason=(
                f"outside traffic allocation of {experience.key!r} "
                f"({experience.traffic_allocation:.0%} of the audience enter)"
            ),
        )
    # 3. holdout
    if experience.holdout > 0.0:
        h = bucket_hash(experience.key + HOLDOUT_SEED, visitor_id, 2) or 0.0
        if h < experience.holdout:
            return _entered(
                experience, 0, True, f"holdout: kept on control ({experience.holdout:.0%} of entrants are held out)"
            )
    # 4. the variant of the hash's range
    share = experience.weights[variant]
    return _entered(
        experience, variant, False, f"{experience.type}: {_describe(variant, experience)}, weight {share:.0%}"
    )


def _assign_hashed(plan: HashedPlan, visitor_id: str, sticky: int | None) -> tuple[bool, int, bool, float, str]:
    """``assign_variant`` from an experience's pre-built tables: (entered, variant, holdout, propensity,
    reason), the same steps and strings, without building the per-request ones (issue 22)."""
    # 1. sticky assignment (an int or None: callers send any other value down the general path)
    if sticky is not None:
        if sticky == HOLDOUT_STICKY:
            return True, 0, True, plan.propensities[0], "sticky: held out on an earlier visit (control)"
        if 0 <= sticky < len(plan.propensities):
            return True, sticky, False, plan.propensities[sticky], plan.sticky[sticky]
    # 2. traffic allocation
    variant = choose_variation(bucket_hash(plan.key, visitor_id, 2) or 0.0, plan.ranges)
    if variant < 0:
        return False, 0, False, 1.0, plan.outside
    # 3. holdout
    if plan.holdout > 0.0 and (bucket_hash(plan.holdout_seed, visitor_id, 2) or 0.0) < plan.holdout:
        return True, 0, True, plan.propensities[0], plan.held_out
    # 4. the variant of the hash's range
    return True, variant, False, plan.propensities[variant], plan.entered[variant]


def _hashed_assignment(
    experience: Experience, entered: bool, variant: int, holdout: bool, propensity: float, reason: str
) -> Assignment:
    """What :func:`_assign_hashed` found, with its final reason, as an :class:`Assignment` (a visitor
    outside the traffic allocation has entered no experience)."""
    return Assignment(
        experience=experience if entered else None,
        variant=variant,
        holdout=holdout,
        propensity=propensity,
        reason=reason,
    )


def _entered(experience: Experience, variant: int, holdout: bool, reason: str) -> Assignment:
    """An entrant's assignment, with the propensity of ``variant`` under the current weights."""
    return Assignment(
        experience=experience,
        variant=variant,
        holdout=holdout,
        propensity=variant_propensity(experience, variant, holdout),
        reason=reason,
    )


def assign_bandit(
    experience: Experience,
    visitor_id: str,
    context: FeatureRow,
    policy: RewardModel | None,
    sticky: int | None = None,
) -> Assignment:
    """A ``bandit`` experience: the learned policy's probabilities, or uniform until one exists.

    The uniform draw comes from a hash of (experience, visitor), so the choice is reproducible and the
    logged propensity is exactly the probability the policy gave the chosen variant.
    """
    k = len(experience.variants) + 1
    probabilities = _bandit_probabilities(experience, context, policy, k)
    if sticky is not None and 0 <= sticky < k:
        # A returning visitor keeps their variant; the propensity is what the policy gives it now.
        variant = sticky
        reason = f"sticky: {_describe(sticky, experience)} assigned on an earlier visit"
    else:
        variant = choose_action(probabilities, uniform_from_key(experience.key, visitor_id))
        if policy is None:
            how = f"bandit without a policy model yet: uniform over {k} variants"
        else:
            how = f"bandit policy {policy.version} ({experience.bandit_method}): P = {probabilities[variant]:.2f}"
        reason = f"{how}; {_describe(variant, experience)}"
    return Assignment(
        experience=experience,
        variant=variant,
        holdout=False,
        propensity=probabilities[variant],
        reason=reason,
    )


def _bandit_probabilities(
    experience: Experience, context: FeatureRow, policy: RewardModel | None, k: int
) -> list[float]:
    if policy is None or policy.n_actions != k:
        return [1.0 / k] * k
    return action_probabilities(
        policy.predict(context),
        experience.bandit_method,
        epsilon=experience.epsilon,
        min_probability=experience.min_probability,
    )


def select_experience(
    experiences: Sequence[Experience],
    attributes: dict[str, Any],
    visitor_id: str,
    sticky: Mapping[str, int],
    now: float,
    context: FeatureRow | None = None,
    policies: Mapping[str, RewardModel] | None = None,
    plugin_policies: Mapping[str, ExperiencePolicy] = _NO_PLUGIN_POLICIES,
) -> Assignment:
    """The first running experience whose audience matches decides (Ninetailed's rule: order is priority).

    ``policies`` are the reward models of ``bandit`` experiences by key; ``plugin_policies`` the
    plugins' experience types (``Registry.policies``), for any type that is not built in.
    """
    skipped: list[str] = []
    for experience in experiences:
        # Per-experience strings, tables and the compiled audience come from its plan (issue 22).
        plan = experience_plan(experience, _HASHED_TYPES)
        if not experience.is_running(now):
            skipped.append(plan.not_running)
            continue
        audience = experience.audience
        compiled = plan.audience
        actuals: tuple[object, ...] | None = None
        if compiled is not None:
            actuals = compiled.evaluate(attributes)
            if actuals is None:
                skipped.append(plan.not_in_audience)
                continue
        elif audience is not None and not eval_condition(attributes, audience.condition):
            skipped.append(plan.not_in_audience)
            continue
        if experience.layer is not None:
            outside_layer = layer_miss(experience, visitor_id)
            if outside_layer is not None:
                return Assignment(
                    experience=None, variant=0, holdout=False, propensity=1.0,
                    reason=f"baseline: {plan.matched}; {outside_layer}",
                )
        if experience.frequency_cap is not None:
            capped = cap_reached(experience, attributes)  # frequency caps (personalization/decision/frequency.py)
            if capped is not None:
                return Assignment(
                    experience=None, variant=0, holdout=False, propensity=1.0, reason=f"{capped}: {plan.matched}"
                )
        stuck = sticky.get(plan.sticky_key) if sticky else None
        hashed = plan.hashed
        if hashed is not None and (stuck is None or type(stuck) is int):
            entered, variant, holdout, propensity, why_variant = _assign_hashed(hashed, visitor_id, stuck)
            if audience is None:
                reason = plan.reason_prefix + why_variant
            else:
                why = (
                    compiled.explain(attributes, actuals)  # type: ignore[arg-type]
                    if compiled is not None
                    else explain_condition(attributes, audience.condition)
                )
                reason = plan.reason_prefix + why + "); " + why_variant
            if experience.paused and variant in experience.paused:
                reason = f"{experience.paused[variant]}; baseline served, assignment kept: {reason}"
            return _hashed_assignment(experience, entered, variant, holdout, propensity, reason)
        if experience.type == "bandit":
            assignment = assign_bandit(
                experience,
                visitor_id,
                context or {},
                (policies or {}).get(experience.key),
                stuck,
            )
        elif experience.type in _HASHED_TYPES and experience.bucketing == "ninetailed":
            # Contentful Personalization's own hash; outside its traffic the next experience is tried.
            ninetailed = assign_ninetailed(experience, visitor_id)
            if ninetailed is None:
                skipped.append(f"{experience.key}: outside its traffic ({experience.traffic_allocation:.0%})")
                continue
            assignment = ninetailed
        elif experience.type in _HASHED_TYPES:
            assignment = assign_variant(experience, visitor_id, stuck)
        else:  # a type a plugin registered (personalization/plugins.py)
            plugin_policy = plugin_policies.get(experience.type)
            if plugin_policy is None:
                skipped.append(f"{experience.key}: no policy for type {experience.type!r}")
                continue
            assignment = plugin_policy.assign(experience, visitor_id, stuck, attributes, context or {})
        if audience is not None:
            # After the policy ran (a plugin's may read the attributes), as the reason always was.
            why = explain_condition(attributes, audience.condition)
            reason = f"audience {audience.name!r} matched ({why}); {assignment.reason}"
        else:
            reason = f"everyone; {assignment.reason}"
        if experience.paused and assignment.variant in experience.paused:
            reason = f"{experience.paused[assignment.variant]}; baseline served, assignment kept: {reason}"
        return Assignment(
            experience=assignment.experience,
            variant=assignment.variant,
            holdout=assignment.holdout,
            propensity=assignment.propensity,
            reason=reason,
        )
    if not experiences:
        reason = "no experience on this entry: baseline"
    else:
        reason = "baseline: " + "; ".join(skipped)
    return Assignment(experience=None, variant=0, holdout=False, propensity=1.0, reason=reason)
