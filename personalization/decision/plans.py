"""What selection needs of an experience, worked out once per catalog instead of once per request.

Issue 22: ``select_experience`` ran ~7 µs per entry of ``POST /v1/personalize``, most of it
re-deriving things that depend on the experience alone — bucket ranges, the marketer-readable reason
of every variant, propensities, the phase key, the audience's operator look-ups and the static half of
its explanation (``country US in [CA, US]``: only ``US`` is the visitor's). An
:class:`ExperiencePlan` holds them; :func:`experience_plan` builds it on first sight of an
experience and then finds it by identity. Experiences are frozen Structs that content rebuilds (new
objects) on every change, so a plan can never go stale; the cache holds a reference to each experience
(so an id is never reused while cached) and is emptied when it reaches :data:`MAX_PLANS`.

Nothing here decides differently: every string is the same f-string the per-request code wrote, and
anything outside the common shapes (weights of the wrong length, ``$or``/``$not`` at the top of a
condition, an operator the explanation does not name) has no plan part, so the general code runs.
``tests/personalization/decision/test_plans.py`` checks each part against that general code.

Measured on the benchmark request (demo content: 3 entries, 4 experiences, 5 % global holdout,
demo segment model): ``decide()`` ≈43 → ≈27.5 µs (medians of 3 runs), of which these plans are
~9 µs; the rest is ``decide``'s exposures, attributes and segment scoring. A plan costs ~5–6 µs
to build, once per experience object (an experience built per request would pay that every time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from personalization.decision.audience_explain import (
    _EXPLAIN_MAX,
    _SYMBOLS,
    explain_condition,
    format_value,
)
from personalization.decision.audience_values import get_path, truthy
from personalization.decision.audiences import (
    OPERATORS,
    SavedGroups,
    _eval_value,
    is_operator_object,
)
from personalization.decision.bucketing import bucket_ranges
from personalization.types import Experience, phase_key

__all__ = [
    "CompiledAudience",
    "ExperiencePlan",
    "HashedPlan",
    "experience_plan",
    "describe_variant",
    "variant_propensity",
    "HOLDOUT_SEED",
    "MAX_PLANS",
]

#: Appended to the experience key to seed the holdout's hash (independent of the variant hash).
HOLDOUT_SEED = ":holdout"

#: Plans kept before the cache is emptied: far more experiences than any catalog holds.
MAX_PLANS = 4096
_NO_GROUPS: SavedGroups = {}
_COMBINATORS = frozenset({"$or", "$nor", "$and", "$not"})

Clause = tuple[str, Callable[[object, Any, SavedGroups], bool], Any]


def _literal(actual: object, clause: object, groups: SavedGroups) -> bool:
    """A clause that is not a single known operator: ``_eval_value`` decides, as ``eval_condition`` does."""
    return _eval_value(clause, actual, groups)


class CompiledAudience:
    """An audience condition of flat ``{path: clause}`` shape, its look-ups and explanation text pre-built.

    :meth:`evaluate` is ``eval_condition`` (same clause order, same operator functions, same
    fail-closed ``RecursionError``) returning the values it read; :meth:`explain` is
    ``explain_condition`` from those values, with the operators' text already formatted.
    """

    __slots__ = ("condition", "clauses", "parts")

    def __init__(self, condition: dict[str, Any]) -> None:
        self.condition = condition
        clauses: list[Clause] = []
        for key, value in condition.items():
            # ``_eval_value``'s own fast path: a one-key dict naming a known operator is that operator.
            if isinstance(value, dict) and len(value) == 1:
                ((op, arg),) = value.items()
                fn = OPERATORS.get(op) if type(op) is str else None
                if fn is not None:
                    clauses.append((key, fn, arg))
                    continue
            clauses.append((key, _literal, value))
        self.clauses = tuple(clauses)
        try:
            self.parts = _explain_parts(condition)
        except RecursionError:  # a clause too deep to format: explain_condition says so per request
            self.parts = None

    def evaluate(self, attributes: dict[str, Any]) -> tuple[object, ...] | None:
        """The values each clause read when every clause passes; ``None`` when the visitor is not in it."""
        actuals = []
        try:
            for path, fn, arg in self.clauses:
                actual = get_path(attributes, path)
                if not fn(actual, arg, _NO_GROUPS):
                    return None
                actuals.append(actual)
        except RecursionError:  # as eval_condition: absurdly deep nesting fails closed
            return None
        return tuple(actuals)

    def explain(self, attributes: dict[str, Any], actuals: tuple[object, ...]) -> str:
        """``explain_condition(attributes, condition)``, from the values :meth:`evaluate` read."""
        parts = self.parts
        if parts is None:
            return explain_condition(attributes, self.condition)
        try:
            text = ", ".join(
                [prefix if i < 0 else prefix + format_value(actuals[i]) + suffix for i, prefix, suffix in parts]
            ) or "everyone"
        except RecursionError:
            text = "(condition nested too deeply)"
        return text if len(text) <= _EXPLAIN_MAX else text[: _EXPLAIN_MAX - 1] + "…"


def _explain_parts(condition: dict[str, Any]) -> tuple[tuple[int, str, str], ...] | None:
    """``_explain``'s pieces as ``(clause index or -1, text before the value, text after)``.

    ``None`` when a clause uses an operator whose text depends on more than the value
    (``$not``, ``$size``, ``$type``, ``$elemMatch``, unknown ones): ``explain_condition`` then runs.
    """
    parts: list[tuple[int, str, str]] = []
    for i, (key, clause) in enumerate(condition.items()):
        if not is_operator_object(clause):
            parts.append((i, f"{key} ", f" = {format_value(clause)}"))
            continue
        for op, arg in clause.items():
            if op == "$exists":
                parts.append((-1, f"{key} {'exists' if truthy(arg) else 'does not exist'}", ""))
            elif op in _SYMBOLS:
                parts.append((i, f"{key} ", f" {_SYMBOLS[op]} {format_value(arg)}"))
            else:
                return None
    return tuple(parts)


def variant_propensity(experience: Experience, variant: int, holdout_served: bool) -> float:
    """Probability that an entrant is served ``variant`` (the formula in ``selection``'s docstring).

    Defined here, beside the tables built from it, and re-exported by
    :mod:`~personalization.decision.selection`, so the two modules import one way.
    """
    h = experience.holdout
    weights = experience.weights
    w = weights[variant] if 0 <= variant < len(weights) else 0.0
    if variant == 0:
        return h + (1.0 - h) * w
    return (1.0 - h) * w


def describe_variant(variant: int, experience: Experience) -> str:
    """``control`` or ``variant 2 (entryId)``, as reasons name a variant."""
    return "control" if variant == 0 else f"variant {variant} ({experience.variants[variant - 1]})"


class HashedPlan:
    """``assign_variant``'s tables for an experience whose weights fit its variants (k + 1 of them)."""

    __slots__ = (
        "key", "holdout_seed", "holdout", "ranges", "propensities", "entered", "sticky", "outside", "held_out",
    )  # fmt: skip

    def __init__(self, experience: Experience, k: int) -> None:
        weights = experience.weights
        self.key = experience.key
        self.holdout_seed = experience.key + HOLDOUT_SEED
        self.holdout = experience.holdout
        self.ranges = tuple(bucket_ranges(k, experience.traffic_allocation, list(weights)))
        self.propensities = tuple(variant_propensity(experience, v, False) for v in range(k))
        self.entered = tuple(
            f"{experience.type}: {describe_variant(v, experience)}, weight {weights[v]:.0%}" for v in range(k)
        )
        self.sticky = tuple(f"sticky: {describe_variant(v, experience)} assigned on an earlier visit" for v in range(k))
        self.outside = (
            f"outside traffic allocation of {experience.key!r} "
            f"({experience.traffic_allocation:.0%} of the audience enter)"
        )
        self.held_out = f"holdout: kept on control ({experience.holdout:.0%} of entrants are held out)"


class ExperiencePlan:
    """Everything per-experience that ``select_experience`` reads (module docstring)."""

    __slots__ = (
        "experience", "sticky_key", "not_running", "not_in_audience", "matched", "reason_prefix", "audience",
        "hashed",
    )  # fmt: skip

    def __init__(self, experience: Experience, hashed_types: frozenset[str]) -> None:
        self.experience = experience
        self.sticky_key = phase_key(experience.key, experience.phase)
        self.not_running = f"{experience.key} not running"
        audience = experience.audience
        if audience is None:
            self.not_in_audience = ""
            self.matched = "everyone"
            self.reason_prefix = "everyone; "
            self.audience = None
        else:
            self.not_in_audience = f"{experience.key}: not in audience {audience.name!r}"
            self.matched = f"audience {audience.name!r} matched"
            self.reason_prefix = f"audience {audience.name!r} matched ("
            condition = audience.condition
            flat = type(condition) is dict and all(type(k) is str and k not in _COMBINATORS for k in condition)
            self.audience = CompiledAudience(condition) if flat else None
        k = len(experience.variants) + 1
        self.hashed: HashedPlan | None = None
        if (
            experience.type in hashed_types
            and experience.bucketing != "ninetailed"
            and type(experience.weights) is tuple
            and len(experience.weights) == k
        ):
            try:
                self.hashed = HashedPlan(experience, k)
            except (TypeError, ValueError):  # weights that are not numbers: the general path raises as it did
                self.hashed = None


_PLANS: dict[int, ExperiencePlan] = {}


def experience_plan(experience: Experience, hashed_types: frozenset[str]) -> ExperiencePlan:
    """The plan of ``experience``, built on first use and then found by identity (module docstring)."""
    plan = _PLANS.get(id(experience))
    if plan is not None and plan.experience is experience:
        return plan
    plan = ExperiencePlan(experience, hashed_types)
    if len(_PLANS) >= MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(experience)] = plan
    return plan
