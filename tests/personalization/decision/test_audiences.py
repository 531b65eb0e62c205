"""Audience conditions against GrowthBook's official ``evalCondition`` cases, plus explain/validate.

The cases live outside the project (``../shared/conformance/growthbook-cases.json``, or the directory
in ``VARY_CONFORMANCE_DIR``) and are not copied in; without them the conformance tests are skipped
with a reason, and the hand-written tests below still run.
"""

from __future__ import annotations

from typing import Any

import pytest

from personalization.decision.audience_explain import explain_condition
from personalization.decision.audience_validate import (
    ConditionError,
    check_condition,
    validate_condition,
)
from personalization.decision.audiences import eval_condition
from tests.personalization.decision.conformance import CASES, SKIP_REASON, case_params

# -- conformance ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", case_params("evalCondition"))
def test_eval_condition(case: list[Any]) -> None:
    _, condition, attributes, expected, *rest = case
    saved_groups = rest[0] if rest else None
    assert eval_condition(attributes, condition, saved_groups) is expected


def test_all_conformance_conditions_validate_cleanly_or_are_meant_to_fail() -> None:
    """The cases are well-formed GrowthBook; validation may only flag the deliberately broken ones."""
    if CASES is None:
        pytest.skip(SKIP_REASON)
    flagged = {case[0] for case in CASES["evalCondition"] if validate_condition(case[1])}
    assert flagged == {
        "unknown operator - pass",
        "$regex invalid - pass",
        "$regex invalid - fail",
        "$in - not array",
        "$nin - not array",
        "$ini - not array",
        "$nini - not array",
    }


# -- hand-written: evaluation ---------------------------------------------------------------------------


def test_invalid_regex_is_false_and_never_raises() -> None:
    for op in ("$regex", "$regexi"):
        assert eval_condition({"name": "hello"}, {"name": {op: "(unclosed"}}) is False
        assert eval_condition({"name": "hello"}, {"name": {op: "/???***[)"}}) is False
        assert eval_condition({"name": "hello"}, {"name": {"$not": {op: "["}}}) is True


def test_regex_dollar_means_end_of_input_as_in_js() -> None:
    assert eval_condition({"bday": "1980-12-25"}, {"bday": {"$regex": "-12-25$"}}) is True
    assert eval_condition({"bday": "1980-12-25\n"}, {"bday": {"$regex": "-12-25$"}}) is False


def test_malformed_structure_fails_closed() -> None:
    assert eval_condition({"a": 1}, {"$or": {"a": 1}}) is False
    assert eval_condition({"a": 1}, {"$and": [1]}) is False
    assert eval_condition({"a": 1}, {"$not": "a"}) is False
    assert eval_condition({"a": 1}, "a") is False  # type: ignore[arg-type]


def test_segment_scores_by_dot_path() -> None:
    attrs = {"segments": {"price_sensitive": 0.8123}, "country": "US"}
    assert eval_condition(attrs, {"segments.price_sensitive": {"$gte": 0.6}, "country": {"$in": ["CA", "US"]}})
    assert not eval_condition(attrs, {"segments.price_sensitive": {"$gte": 0.9}})
    assert not eval_condition(attrs, {"segments.loyal": {"$gte": 0.6}})  # missing is null, Number(null) = 0


# -- hand-written: explain ------------------------------------------------------------------------------


def test_explain_condition_example() -> None:
    attrs = {"segments": {"price_sensitive": 0.8123}, "country": "US"}
    condition = {"segments.price_sensitive": {"$gte": 0.6}, "country": {"$in": ["CA", "US"]}}
    assert explain_condition(attrs, condition) == "segments.price_sensitive 0.81 ≥ 0.6, country US in [CA, US]"


def test_explain_operators_and_logic() -> None:
    attrs = {"plan": "pro", "age": 41, "ua": "Mobile Safari", "tags": ["a"]}
    text = explain_condition(
        attrs,
        {
            "$or": [{"plan": "pro"}, {"age": {"$lt": 30}}],
            "ua": {"$regex": "Mobile"},
            "email": {"$exists": True},
            "country": {"$nin": ["DE"]},
            "age": {"$ne": 40, "$lte": 65},
        },
    )
    assert text == (
        "any of (plan pro = pro; age 41 < 30), ua Mobile Safari matches Mobile, email exists, "
        "country (not set) not in [DE], age 41 ≠ 40, age 41 ≤ 65"
    )
    assert explain_condition(attrs, {"$and": [{"age": {"$gt": 18}}]}) == "all of (age 41 > 18)"


def test_explain_is_truncated() -> None:
    condition = {f"attribute_{i}": {"$in": ["some", "rather", "long", "values"]} for i in range(20)}
    text = explain_condition({}, condition)
    assert len(text) <= 200 and text.endswith("…")


# -- hand-written: validate -----------------------------------------------------------------------------


def test_validate_accepts_a_good_condition() -> None:
    good = {
        "segments.price_sensitive": {"$gte": 0.6},
        "$or": [{"country": {"$in": ["CA", "US"]}}, {"app": {"$vgte": "2.1.0"}}],
        "tags": {"$elemMatch": {"$regexi": "^vip"}},
    }
    assert validate_condition(good) == []
    assert check_condition(good) is good


def test_validate_finds_problems_with_locations() -> None:
    problems = validate_condition(
        {
            "country": {"$in": "US"},
            "ua": {"$regx": "Mobile"},
            "email": {"$regex": "([a-z]+"},
            "$or": [{"age": {"$gt": [18]}}, "oops"],
            "$nor": {"x": 1},
            "tags": {"$size": "3"},
            "id": {"$inGroup": "vips"},
        },
        saved_groups={"staff": [1]},
    )
    assert problems[0] == "$.country.$in: expected a list, got string"
    assert problems[1] == "$.ua.$regx: unknown operator $regx (did you mean $regex?)"
    assert problems[2].startswith("$.email.$regex: regular expression does not compile: ")
    assert problems[3].startswith("$.$or[0].age.$gt: expected a string, number, boolean or null, got array")
    assert problems[4] == "$.$or[1]: expected an object of attribute conditions, got string"
    assert problems[5] == "$.$nor: expected a list of conditions, got object"
    assert problems[6].startswith("$.tags.$size: expected a number or an operator object")
    assert problems[7] == "$.id.$inGroup: unknown saved group 'vips'"
    assert len(problems) == 8


def test_validate_rejects_non_objects_and_check_raises() -> None:
    assert validate_condition(["country", "US"]) == ["$: expected an object of attribute conditions, got array"]
    with pytest.raises(ConditionError) as info:
        check_condition({"country": {"$in": "US"}})
    assert isinstance(info.value, ValueError)
    assert info.value.problems == ["$.country.$in: expected a list, got string"]
