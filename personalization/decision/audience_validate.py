"""Reporting mis-modelled audiences: the write path's check of a condition, never the request path's.

Evaluation (:mod:`personalization.decision.audiences`) tolerates every malformed clause — it
evaluates to False, so a mistake costs at most that audience. This module is what tells someone:
:func:`validate_condition` lists each problem with a JSON-path-ish location marketers can find
(``$.country.$in: expected a list, got string``), and :func:`check_condition` raises
:class:`ConditionError` with them. The content compiler calls it for every audience it compiles.
"""

from __future__ import annotations

import difflib
from typing import Any

from personalization.decision.audience_explain import format_value
from personalization.decision.audience_regex import regex_error
from personalization.decision.audience_values import is_number, js_type
from personalization.decision.audiences import (
    OPERATORS,
    SavedGroups,
    is_operator_object,
)

__all__ = ["ConditionError", "validate_condition", "check_condition"]

# --------------------------------------------------------------------------------------------------
# Validation (reporting mis-modelled audiences)
# --------------------------------------------------------------------------------------------------


class ConditionError(ValueError):
    """A condition that would silently never (or always) match; ``problems`` says where and why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid audience condition: " + "; ".join(problems))


_LIST_OPS = frozenset({"$in", "$nin", "$ini", "$nini", "$all", "$alli"})
_COMPARE_OPS = frozenset({"$eq", "$ne", "$lt", "$lte", "$gt", "$gte"})
_VERSION_OPS = frozenset({"$veq", "$vne", "$vlt", "$vlte", "$vgt", "$vgte"})
_TYPES = ("string", "number", "boolean", "array", "object", "null")
_LOGICAL = ("$or", "$nor", "$and", "$not")


def _describe(x: object) -> str:
    return js_type(x) if x is not None else "null"


def validate_condition(condition: object, *, saved_groups: SavedGroups | None = None) -> list[str]:
    """Problems that make ``condition`` mean something other than intended; empty if it is fine.

    Each problem reads ``<location>: <what is wrong>``, the location JSON-path-ish from ``$``
    (``$.country.$in: expected a list, got string``), so marketers can find the clause. Evaluation
    tolerates all of these (they evaluate to False); this is what tells someone about them. Pass
    ``saved_groups`` to also check that ``$inGroup``/``$notInGroup`` ids exist.
    """
    problems: list[str] = []
    try:
        _validate_condition(condition, "$", problems, saved_groups)
    except RecursionError:
        problems.append("$: nested too deeply to evaluate")
    return problems


def check_condition(condition: object, *, saved_groups: SavedGroups | None = None) -> dict[str, Any]:
    """``condition`` itself if :func:`validate_condition` finds nothing; else raise :class:`ConditionError`."""
    problems = validate_condition(condition, saved_groups=saved_groups)
    if problems:
        raise ConditionError(problems)
    return condition  # type: ignore[return-value]


def _validate_condition(cond: object, loc: str, problems: list[str], groups: SavedGroups | None) -> None:
    if not isinstance(cond, dict):
        problems.append(f"{loc}: expected an object of attribute conditions, got {_describe(cond)}")
        return
    for key, value in cond.items():
        if not isinstance(key, str):
            problems.append(f"{loc}: keys must be strings, got {_describe(key)}")
            continue
        here = f"{loc}.{key}"
        if key in ("$or", "$nor", "$and"):
            if not isinstance(value, list):
                problems.append(f"{here}: expected a list of conditions, got {_describe(value)}")
                continue
            for i, sub in enumerate(value):
                _validate_condition(sub, f"{here}[{i}]", problems, groups)
        elif key == "$not":
            _validate_condition(value, here, problems, groups)
        elif key in OPERATORS or _did_you_mean(key, _LOGICAL):
            # "$groups" is a legitimate (GrowthBook) attribute name; "$in" or "$orr" here is a slip.
            hint = _did_you_mean(key, _LOGICAL)
            what = f"{key} is a value operator; put it under an attribute, e.g. {{\"country\": {{\"{key}\": ...}}}}" if key in OPERATORS else f"unknown logical operator {key}{hint}"
            problems.append(f"{here}: {what}")
        elif not key or "" in key.split("."):
            problems.append(f"{here}: empty attribute path segment")
        else:
            _validate_value(value, here, problems, groups)


def _validate_value(clause: object, loc: str, problems: list[str], groups: SavedGroups | None) -> None:
    if not isinstance(clause, dict):
        return  # a literal: loose (primitive) or deep (array) equality
    if not clause:
        problems.append(f"{loc}: empty object only matches an attribute that is exactly {{}}")
        return
    dollar = [k for k in clause if isinstance(k, str) and k.startswith("$")]
    if not dollar:
        return  # a literal object compared for deep equality
    if len(dollar) != len(clause):
        plain = ", ".join(str(k) for k in clause if k not in dollar)
        problems.append(f"{loc}: mixes operators with plain keys ({plain}); it is compared as a literal object, operators are ignored")
        return
    for op, arg in clause.items():
        _validate_operator(op, arg, f"{loc}.{op}", problems, groups)


def _validate_operator(op: str, arg: object, loc: str, problems: list[str], groups: SavedGroups | None) -> None:
    if op not in OPERATORS:
        problems.append(f"{loc}: unknown operator {op}{_did_you_mean(op, tuple(OPERATORS))}")
    elif op in _LIST_OPS:
        if not isinstance(arg, list):
            problems.append(f"{loc}: expected a list, got {_describe(arg)}")
        elif op in ("$all", "$alli"):
            for i, item in enumerate(arg):
                _validate_value(item, f"{loc}[{i}]", problems, groups)
    elif op in ("$regex", "$regexi"):
        if not isinstance(arg, str):
            problems.append(f"{loc}: expected a regular expression string, got {_describe(arg)}")
        else:
            err = regex_error(arg, op == "$regexi")
            if err is not None:
                problems.append(f"{loc}: regular expression {err}")
    elif op in _COMPARE_OPS:
        if isinstance(arg, (list, tuple, dict)):
            problems.append(f"{loc}: expected a string, number, boolean or null, got {_describe(arg)} (never matches)")
    elif op in _VERSION_OPS:
        if not (isinstance(arg, str) or is_number(arg)):
            problems.append(f"{loc}: expected a version string such as \"1.2.3\", got {_describe(arg)}")
    elif op == "$exists":
        if not isinstance(arg, bool):
            problems.append(f"{loc}: expected true or false, got {_describe(arg)}")
    elif op == "$type":
        if arg not in _TYPES:
            problems.append(f"{loc}: expected one of {', '.join(_TYPES)}, got {format_value(arg)}")
    elif op == "$size":
        if not (is_number(arg) or is_operator_object(arg)):
            problems.append(f"{loc}: expected a number or an operator object such as {{\"$gt\": 2}}, got {_describe(arg)}")
        elif isinstance(arg, dict):
            _validate_value(arg, loc, problems, groups)
    elif op == "$elemMatch":
        if not isinstance(arg, dict) or not arg:
            problems.append(f"{loc}: expected a non-empty object, got {_describe(arg)}")
        elif is_operator_object(arg):
            _validate_value(arg, loc, problems, groups)
        else:
            _validate_condition(arg, loc, problems, groups)
    elif op == "$not":
        if isinstance(arg, dict):
            _validate_value(arg, loc, problems, groups)
    elif op in ("$inGroup", "$notInGroup"):
        if not isinstance(arg, str):
            problems.append(f"{loc}: expected a saved group id (string), got {_describe(arg)}")
        elif groups is not None and arg not in groups:
            problems.append(f"{loc}: unknown saved group {arg!r}")


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
