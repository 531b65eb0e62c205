"""Audience conditions in GrowthBook's MongoDB-style syntax (SDK spec 0.8.0).

Why GrowthBook's syntax and semantics: an audience written once must mean the same thing everywhere.
Evaluating conditions exactly as GrowthBook's SDKs do makes audiences portable (a condition copied
from or to GrowthBook targets the same visitors), and GrowthBook's public cross-SDK test cases
(``tests/personalization/decision/test_audiences.py``, 248 ``evalCondition`` cases) pin the behaviour down.
The reference is the JavaScript SDK (``packages/sdk-js/src/mongrule.ts``), where the spec and its
cases come from; where the Python SDK differs from JS (numeric comparison of strings, comparisons on a
missing attribute) Vary follows JS and the cases. That means JavaScript's coercions are reproduced on
purpose: a missing attribute is ``null`` (``null < 10`` is true, as ``Number(null)`` is 0), ``"8"``
compares numerically against ``5``, and a plain string condition matches ``String(value)``.

Syntax, in brief::

    condition   := {key: clause, ...}                     all keys must pass
    key         := "$or" | "$nor" | "$and"  -> [condition, ...]
                 | "$not"                   -> condition
                 | attribute path ("a.b.c") -> value clause
    value clause := literal                 string/number/bool/null: loose equality;
                                            array/object: deep (JSON) equality
                 | {"$op": arg, ...}        all operators must pass

    operators:  $eq $ne $lt $lte $gt $gte          JS strict (in)equality / relational comparison
                $veq $vne $vlt $vlte $vgt $vgte    semantic versions ("v1.2.3-rc.1+build")
                $in $nin $ini $nini                membership (array attribute: any element)
                $all $alli $elemMatch $size        array tests
                $inGroup $notInGroup               membership in a saved group (list of ids)
                $regex $regexi                     regular-expression search
                $exists $type $not

Error model (why evaluation never raises): conditions run on every request, so a mistake in an
audience must cost at most that audience, never the request.

* Unknown operator, ``$in`` without a list, a regex that does not compile -> that clause is False.
* Structurally malformed conditions (``$or`` not a list, a sub-condition that is not an object) ->
  False ("fail closed": an audience nobody can read targets nobody). JavaScript would throw or pass
  vacuously here; no conformance case depends on it.
* Reporting is separate (:mod:`~personalization.decision.audience_validate`): ``validate_condition``
  lists every such problem with a JSON-path-ish location for marketers, and ``check_condition``
  raises ``ConditionError`` with them, for the write path (compiling audiences), never for the
  per-request path.

Regexes are JavaScript ``RegExp`` patterns run by RE2, in time linear in the input
(:mod:`~personalization.decision.audience_regex`): a pattern RE2 cannot run, or would decide
differently from a browser, is reported by validation and evaluates like one that does not compile
(False); text longer than 2,048 characters never matches.

The modules, by job: this one evaluates (:func:`eval_condition` and the operator table);
:mod:`~personalization.decision.audience_values` holds JavaScript's value semantics, paths,
versions and regexes that evaluation relies on; :mod:`~personalization.decision.audience_explain`
writes the marketer-readable reasons; :mod:`~personalization.decision.audience_validate` reports
mis-modelled audiences (``validate_condition``, ``check_condition``, ``ConditionError``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from personalization.decision.audience_regex import regex_search
from personalization.decision.audience_values import (
    compare,
    get_path,
    js_str,
    js_type,
    json_key,
    padded_version,
    strict_eq,
    to_number,
    truthy,
)

__all__ = ["SavedGroups", "eval_condition", "is_operator_object", "OPERATORS"]

SavedGroups = Mapping[str, Any]

# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def is_operator_object(x: object) -> bool:
    """A non-empty mapping whose keys all start with ``$`` (else it is a literal to compare)."""
    if not isinstance(x, dict) or not x:
        return False
    for k in x:
        if not (isinstance(k, str) and k.startswith("$")):
            return False
    return True


def eval_condition(
    attributes: dict[str, Any], condition: dict[str, Any], saved_groups: SavedGroups | None = None
) -> bool:
    """Whether ``attributes`` satisfy ``condition`` (GrowthBook ``evalCondition``).

    ``saved_groups`` maps a group id to its member list for ``$inGroup``/``$notInGroup``. Never
    raises: anything malformed evaluates to False (see the module docstring). Attributes and
    conditions are JSON-shaped (``dict``/``list``/scalars), which is what keeps this fast enough to
    run per request: type checks are against ``dict``, not the ``Mapping`` ABC.
    """
    try:
        return _eval_condition(attributes, condition, saved_groups or {})
    except RecursionError:  # absurdly deep nesting: fail closed like any other malformed condition
        return False


def _eval_condition(obj: object, condition: object, groups: SavedGroups) -> bool:
    if not isinstance(condition, dict):
        return False
    for key, value in condition.items():
        if key == "$or":
            if not isinstance(value, list) or not _eval_or(obj, value, groups):
                return False
        elif key == "$nor":
            if not isinstance(value, list) or _eval_or(obj, value, groups):
                return False
        elif key == "$and":
            if not isinstance(value, list):
                return False
            for sub in value:
                if not _eval_condition(obj, sub, groups):
                    return False
        elif key == "$not":
            if not isinstance(value, dict) or _eval_condition(obj, value, groups):
                return False
        elif not _eval_value(value, get_path(obj, key) if isinstance(key, str) else None, groups):
            return False
    return True


def _eval_or(obj: object, conditions: list[Any], groups: SavedGroups) -> bool:
    """``$or``: any sub-condition passes; an empty list passes (GrowthBook's rule)."""
    if not conditions:
        return True
    for sub in conditions:
        if _eval_condition(obj, sub, groups):
            return True
    return False


def _eval_value(condition: object, value: object, groups: SavedGroups, insensitive: bool = False) -> bool:
    """One attribute value against a literal or an operator object (GrowthBook ``evalConditionValue``)."""
    if isinstance(condition, dict):
        if len(condition) == 1:
            # Fast path, the common ``{"$op": arg}``: a known operator key is an operator object.
            for op, arg in condition.items():
                fn = OPERATORS.get(op) if type(op) is str else None
                if fn is not None:
                    return fn(value, arg, groups)
        if not is_operator_object(condition):
            return json_key(value) == json_key(condition)
        for op, arg in condition.items():
            fn = OPERATORS.get(op)
            if fn is None or not fn(value, arg, groups):
                return False
        return True
    if isinstance(condition, str):
        if insensitive:
            return js_str(value).lower() == condition.lower()
        return js_str(value) == condition  # JS: value + "" === condition
    if isinstance(condition, bool):
        return value is not None and truthy(value) == condition
    if isinstance(condition, (int, float)):
        return to_number(value) == condition  # JS: value * 1 === condition
    if condition is None:
        return value is None
    return json_key(value) == json_key(condition)  # arrays (and any other literal): deep equality


def _is_in(actual: object, expected: list[Any], insensitive: bool = False) -> bool:
    """``$in``: ``actual`` (or, for an array, any of its elements) strictly equals an expected item."""
    if insensitive:
        expected = [e.lower() if isinstance(e, str) else e for e in expected]
        if isinstance(actual, (list, tuple)):
            actual = [a.lower() if isinstance(a, str) else a for a in actual]
        elif isinstance(actual, str):
            actual = actual.lower()
    if type(actual) is str:
        # JSON values: a string equals only a string, so ``===`` against each item is ``in``.
        return actual in expected
    if isinstance(actual, (list, tuple)):
        for a in actual:
            for e in expected:
                if strict_eq(a, e):
                    return True
        return False
    for e in expected:
        if strict_eq(actual, e):
            return True
    return False


def _is_in_all(actual: object, expected: list[Any], groups: SavedGroups, insensitive: bool) -> bool:
    """``$all``: every expected clause matches at least one element of the array attribute."""
    if not isinstance(actual, (list, tuple)):
        return False
    for clause in expected:
        if not any(_eval_value(clause, a, groups, insensitive) for a in actual):
            return False
    return True


def _group(groups: SavedGroups, group_id: object) -> list[Any]:
    """Members of a saved group; unknown ids (and non-list values) are an empty group."""
    members = groups.get(group_id if isinstance(group_id, str) else js_str(group_id))
    return members if isinstance(members, list) else []


def _elem_match(actual: object, expected: object, groups: SavedGroups) -> bool:
    """``$elemMatch``: some truthy element matches (an operator object or a nested condition)."""
    if not isinstance(actual, (list, tuple)):
        return False
    if is_operator_object(expected):
        return any(truthy(a) and _eval_value(expected, a, groups) for a in actual)
    return any(truthy(a) and _eval_condition(a, expected, groups) for a in actual)


def _op_regex(insensitive: bool) -> Callable[[object, object, SavedGroups], bool]:
    def op(actual: object, pattern: object, _g: SavedGroups) -> bool:
        if not isinstance(pattern, str):
            return False
        return regex_search(pattern, insensitive, js_str(actual))

    return op


def _op_compare(test: Callable[[int], bool]) -> Callable[[object, object, SavedGroups], bool]:
    def op(actual: object, expected: object, _g: SavedGroups) -> bool:
        c = compare(actual, expected)
        return c is not None and test(c)

    return op


def _op_version(test: Callable[[str, str], bool]) -> Callable[[object, object, SavedGroups], bool]:
    def op(actual: object, expected: object, _g: SavedGroups) -> bool:
        return test(padded_version(actual), padded_version(expected))

    return op


OPERATORS: dict[str, Callable[[object, Any, SavedGroups], bool]] = {
    "$eq": lambda a, e, g: strict_eq(a, e),
    "$ne": lambda a, e, g: not strict_eq(a, e),
    "$lt": _op_compare(lambda c: c < 0),
    "$lte": _op_compare(lambda c: c <= 0),
    "$gt": _op_compare(lambda c: c > 0),
    "$gte": _op_compare(lambda c: c >= 0),
    "$veq": _op_version(lambda a, e: a == e),
    "$vne": _op_version(lambda a, e: a != e),
    "$vlt": _op_version(lambda a, e: a < e),
    "$vlte": _op_version(lambda a, e: a <= e),
    "$vgt": _op_version(lambda a, e: a > e),
    "$vgte": _op_version(lambda a, e: a >= e),
    "$exists": lambda a, e, g: (a is not None) if truthy(e) else (a is None),
    "$in": lambda a, e, g: isinstance(e, list) and _is_in(a, e),
    "$nin": lambda a, e, g: isinstance(e, list) and not _is_in(a, e),
    "$ini": lambda a, e, g: isinstance(e, list) and _is_in(a, e, True),
    "$nini": lambda a, e, g: isinstance(e, list) and not _is_in(a, e, True),
    "$inGroup": lambda a, e, g: _is_in(a, _group(g, e)),
    "$notInGroup": lambda a, e, g: not _is_in(a, _group(g, e)),
    "$not": lambda a, e, g: not _eval_value(e, a, g),
    "$size": lambda a, e, g: isinstance(a, (list, tuple)) and _eval_value(e, len(a), g),
    "$elemMatch": _elem_match,
    "$all": lambda a, e, g: isinstance(e, list) and _is_in_all(a, e, g, False),
    "$alli": lambda a, e, g: isinstance(e, list) and _is_in_all(a, e, g, True),
    "$regex": _op_regex(False),
    "$regexi": _op_regex(True),
    "$type": lambda a, e, g: js_type(a) == e,
}
