"""Traits as CDPs send them — lists of scalars and one level of nested object — decoded, and read by
conditions with GrowthBook's array semantics (``$elemMatch``, ``$all``, ``$size``, ``$in``)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from personalization.decision.audiences import eval_condition
from personalization.decision.context import audience_attributes, merge_values
from personalization.types import Profile, Visitor

FEATURES = ["Process Management", "Reporting", "SSO"]
TRAITS: dict[str, Any] = {
    "purchased_product_features": FEATURES,
    "scores": [3, 7.5],
    "address": {"city": "Berlin", "zip": "10115", "tags": ["hq"]},
    "plan": "pro",
    "churned": None,
}


def visitor(traits: dict[str, Any] = TRAITS) -> Visitor:
    return msgspec.convert({"id": "v1", "traits": traits}, Visitor)


def matches(condition: dict[str, Any], traits: dict[str, Any] = TRAITS) -> bool:
    return eval_condition(audience_attributes(visitor(traits), Profile(), {}, now=0.0), condition)


def test_lists_and_nested_objects_decode_and_deeper_nesting_is_refused() -> None:
    decoded = visitor()
    assert decoded.traits["purchased_product_features"] == FEATURES
    assert decoded.traits["address"] == {"city": "Berlin", "zip": "10115", "tags": ["hq"]}
    for bad in ({"x": [[1]]}, {"x": [{"a": 1}]}, {"x": {"a": {"b": 1}}}, {"x": ["y" * 1025]}, {"x": list(range(101))}):
        with pytest.raises(msgspec.ValidationError):
            visitor(bad)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"traits.purchased_product_features": {"$elemMatch": {"$eq": "Reporting"}}}, True),
        ({"traits.purchased_product_features": {"$elemMatch": {"$eq": "Billing"}}}, False),
        ({"traits.purchased_product_features": {"$all": ["SSO", "Reporting"]}}, True),
        ({"traits.purchased_product_features": {"$all": ["SSO", "Billing"]}}, False),
        ({"traits.purchased_product_features": {"$size": 3}}, True),
        ({"traits.purchased_product_features": {"$size": {"$gt": 3}}}, False),
        ({"traits.purchased_product_features": {"$in": ["Billing", "SSO"]}}, True),
        ({"traits.purchased_product_features": {"$nin": ["SSO"]}}, False),
        ({"purchased_product_features": {"$in": ["SSO"]}}, True),  # flat, as GrowthBook attributes
        ({"traits.scores": {"$elemMatch": {"$gt": 7}}}, True),
        ({"traits.scores": {"$elemMatch": {"$gt": 8}}}, False),
        ({"traits.purchased_product_features.0": "Process Management"}, True),
        ({"traits.purchased_product_features.length": {"$gte": 2}}, True),
        ({"traits.address.city": "Berlin"}, True),
        ({"traits.address.tags": {"$elemMatch": {"$eq": "hq"}}}, True),
        ({"traits.address.zip": {"$regex": "^10"}}, True),
        ({"traits.churned": {"$exists": False}}, True),
        ({"traits.plan": {"$in": ["pro", "team"]}}, True),
    ],
)
def test_conditions_over_list_and_object_traits(condition: dict[str, Any], expected: bool) -> None:
    assert matches(condition) is expected


def test_merge_tags_show_lists_joined_and_object_keys_by_path() -> None:
    values = merge_values(visitor())
    assert values["traits.purchased_product_features"] == "Process Management, Reporting, SSO"
    assert values["traits.scores"] == "3, 7.5"
    assert values["traits.address.city"] == "Berlin" and values["traits.address.tags"] == "hq"
    assert "traits.churned" not in values and values["traits.plan"] == "pro"
