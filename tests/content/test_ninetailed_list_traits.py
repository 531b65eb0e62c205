"""Ninetailed's ``contains`` on a trait means membership when the trait is a list (as CDPs send
``purchased_product_features``), and the substring match it always was on text."""

from __future__ import annotations

from typing import Any

import msgspec

from content.experiences.ninetailed_rules import rules_condition
from personalization.decision.audience_validate import validate_condition
from personalization.decision.audiences import eval_condition
from personalization.decision.context import audience_attributes
from personalization.types import Profile, Visitor


def rule(operator: str, value: object, key: str = "features") -> dict[str, Any]:
    condition, problems = rules_condition(
        {"any": [{"all": [{"type": "identify", "key": key, "operator": operator, "value": value}]}]}, validate_condition
    )
    assert problems == []
    return condition


def holds(condition: dict[str, Any], traits: dict[str, Any]) -> bool:
    visitor = msgspec.convert({"id": "v1", "traits": traits}, Visitor)
    return eval_condition(audience_attributes(visitor, Profile(), {}, now=0.0), condition)


def test_contains_on_a_list_is_membership() -> None:
    contains = rule("contains", "Process Management")
    assert holds(contains, {"features": ["Process Management", "SSO"]})
    assert not holds(contains, {"features": ["Process Management Pro"]})  # not a substring of an item
    assert not holds(rule("contains", "Process"), {"features": ["Process Management"]})
    assert not holds(rule("contains", "t,S"), {"features": ["Process Management", "SSO"]})  # not the joined text
    assert holds(rule("contains", "3"), {"features": [3, 4]})  # the builder's text value, a numeric item
    assert not holds(contains, {})


def test_contains_on_text_is_still_a_substring_and_not_contains_is_its_negation() -> None:
    email = rule("contains", "@acme.com", key="email")
    assert holds(email, {"email": "jo@acme.com"}) and not holds(email, {"email": "jo@other.org"})
    assert holds(rule("contains", "3", key="zip"), {"zip": 10315})
    excluded = rule("notContains", "SSO")
    assert not holds(excluded, {"features": ["SSO"]})
    assert holds(excluded, {"features": ["SSO Pro"]}) and holds(excluded, {}) and holds(excluded, {"features": "none"})
