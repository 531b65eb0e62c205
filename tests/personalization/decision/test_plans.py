"""Experience plans (issue 22): the pre-built tables decide exactly as the per-request code does.

Each fast path is checked against its reference: :class:`CompiledAudience` against
``eval_condition``/``explain_condition`` (GrowthBook's condition cases and hand-written ones), the
planned ``assign_variant`` against ``_assign_unplanned`` over many visitors, weights, holdouts and
sticky values, and ``select_experience`` reasons against the strings written out by hand.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from personalization.decision import plans
from personalization.decision.audience_explain import explain_condition
from personalization.decision.audiences import eval_condition
from personalization.decision.plans import CompiledAudience, experience_plan
from personalization.decision.selection import (
    _HASHED_TYPES,
    HOLDOUT_STICKY,
    _assign_unplanned,
    assign_variant,
    select_experience,
)
from personalization.types import Audience, Experience
from tests.personalization.decision.conformance import CASES, SKIP_REASON

_ATTRIBUTES: list[dict[str, Any]] = [
    {},
    {"country": "US", "channel": "web", "segments": {"price_sensitive": 0.81}, "plan": "pro"},
    {"country": "DE", "channel": "email", "segments": {"price_sensitive": 0.2}, "tags": ["a", "b"], "n": 3},
    {"country": None, "segments": {}, "plan": True, "n": 3.0, "name": "x" * 50, "tags": [1, [2]]},
]

_CONDITIONS: list[Any] = [
    {},
    {"country": {"$in": ["CA", "US"]}},
    {"segments.price_sensitive": {"$gte": 0.6}},
    {"segments.price_sensitive": {"$gte": 0.1, "$lt": 0.9}, "country": "US"},
    {"plan": "pro", "n": 3, "tags": ["a", "b"], "missing": None},
    {"plan": True, "country": {"$exists": False}, "name": {"$regex": "^x+$"}},
    {"tags": {"$size": 2}},  # explained by explain_condition (its text depends on more than the value)
    {"tags": {"$elemMatch": {"$eq": "a"}}, "n": {"$type": "number"}},
    {"n": {"$not": {"$lt": 2}}},
    {"n": {"$unknown": 1}},
    {"$or": [{"country": "US"}, {"country": "DE"}]},
    {"country": {}},
    "not a condition",
]


def _compiled_agrees(attributes: dict[str, Any], condition: Any) -> None:
    if not (isinstance(condition, dict) and not any(k in ("$or", "$nor", "$and", "$not") for k in condition)):
        return  # the plan leaves these to eval_condition
    compiled = CompiledAudience(condition)
    actuals = compiled.evaluate(attributes)
    assert (actuals is not None) is eval_condition(attributes, condition)
    if actuals is not None:
        assert compiled.explain(attributes, actuals) == explain_condition(attributes, condition)


@pytest.mark.parametrize("condition", _CONDITIONS, ids=repr)
def test_compiled_audience_agrees_with_eval_and_explain(condition: Any) -> None:
    for attributes in _ATTRIBUTES:
        _compiled_agrees(attributes, condition)


def test_compiled_audience_agrees_on_growthbook_condition_cases() -> None:
    if CASES is None:
        pytest.skip(SKIP_REASON)
    for _, condition, attributes, *_ in CASES["evalCondition"]:
        _compiled_agrees(attributes, condition)


def test_long_explanations_are_truncated_as_explain_condition_does() -> None:
    condition = {f"attribute_{i}": {"$in": ["alpha", "beta", "gamma"]} for i in range(12)}
    attributes = {f"attribute_{i}": "alpha" for i in range(12)}
    compiled = CompiledAudience(condition)
    actuals = compiled.evaluate(attributes)
    assert actuals is not None
    text = compiled.explain(attributes, actuals)
    assert text == explain_condition(attributes, condition) and len(text) == 200 and text.endswith("…")


def _experience(rng: random.Random, i: int) -> Experience:
    k = rng.choice([2, 3, 4])
    raw = [rng.random() for _ in range(k)]
    weights = tuple(w / sum(raw) for w in raw)
    return Experience(
        id=f"id-{i}",
        key=f"exp-{i}",
        name=f"exp {i}",
        type=rng.choice(["ab_test", "personalization"]),
        variants=tuple(f"entry-{i}-{v}" for v in range(1, k)),
        weights=weights,
        traffic_allocation=rng.choice([1.0, 0.5, 0.25]),
        holdout=rng.choice([0.0, 0.05, 0.3]),
    )


def test_planned_assignment_equals_the_unplanned_one() -> None:
    rng = random.Random(22)
    for i in range(40):
        experience = _experience(rng, i)
        assert experience_plan(experience, _HASHED_TYPES).hashed is not None
        k = len(experience.variants) + 1
        for n in range(150):
            visitor = f"visitor-{i}-{n}" if n % 7 else f"jörg-{n}-✓"
            for sticky in (None, HOLDOUT_STICKY, 0, k - 1, k, -5):
                assert assign_variant(experience, visitor, sticky) == _assign_unplanned(experience, visitor, sticky)


def test_experiences_the_plan_cannot_table_take_the_general_path() -> None:
    wrong_length = Experience(id="w", key="w", name="w", type="ab_test", variants=("b",), weights=(0.5, 0.3, 0.2))
    assert experience_plan(wrong_length, _HASHED_TYPES).hashed is None
    for n in range(50):
        assert assign_variant(wrong_length, f"v{n}") == _assign_unplanned(wrong_length, f"v{n}", None)
    bandit = Experience(id="b", key="b", name="b", type="bandit", variants=("b",), weights=(0.5, 0.5))
    assert experience_plan(bandit, _HASHED_TYPES).hashed is None
    nested = Audience(id="a", key="a", name="A", condition={"$or": [{"country": "US"}]})
    with_or = Experience(
        id="o", key="o", name="o", type="ab_test", variants=("b",), weights=(0.0, 1.0), audience=nested
    )
    assert experience_plan(with_or, _HASHED_TYPES).audience is None
    chosen = select_experience([with_or], {"country": "US"}, "v1", {}, now=0.0)
    assert chosen.reason == "audience 'A' matched (any of (country US = US)); ab_test: variant 1 (b), weight 100%"


def test_select_reasons_are_the_documented_strings() -> None:
    audience = Audience(id="a", key="na", name="North America", condition={"country": {"$in": ["CA", "US"]}})
    paused = {1: "guardrail 'errors' paused variant 1"}
    experience = Experience(
        id="e", key="hero", name="hero", type="personalization", variants=("canada",), weights=(0.0, 1.0),
        audience=audience, paused=paused,
    )
    chosen = select_experience([experience], {"country": "US"}, "v1", {}, now=0.0)
    assert chosen.experience is experience and chosen.variant == 1 and chosen.propensity == 1.0
    assert chosen.reason == (
        "guardrail 'errors' paused variant 1; baseline served, assignment kept: "
        "audience 'North America' matched (country US in [CA, US]); personalization: variant 1 (canada), weight 100%"
    )
    missed = select_experience([experience], {"country": "DE"}, "v1", {}, now=0.0)
    assert missed.reason == "baseline: hero: not in audience 'North America'" and missed.experience is None
    sticky = select_experience([experience], {"country": "CA"}, "v1", {"hero": HOLDOUT_STICKY}, now=0.0)
    assert sticky.holdout and sticky.reason.endswith("; sticky: held out on an earlier visit (control)")


def test_plans_are_found_by_identity_and_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plans, "MAX_PLANS", 3)
    monkeypatch.setattr(plans, "_PLANS", {})
    made = [Experience(id=f"{i}", key=f"k{i}", name="n", type="ab_test", variants=(), weights=(1.0,)) for i in range(5)]
    first = experience_plan(made[0], _HASHED_TYPES)
    assert experience_plan(made[0], _HASHED_TYPES) is first
    # An equal but distinct experience (content rebuilt it) gets its own plan.
    twin = Experience(id="0", key="k0", name="n", type="ab_test", variants=(), weights=(1.0,))
    assert experience_plan(twin, _HASHED_TYPES) is not first
    for experience in made[1:]:
        experience_plan(experience, _HASHED_TYPES)
    assert len(plans._PLANS) <= 3
