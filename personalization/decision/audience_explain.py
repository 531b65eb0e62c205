"""Decision reasons a marketer can read: what an audience condition compared, with the visitor's values.

``segments.price_sensitive 0.81 ≥ 0.6, country US in [CA, US]``: every decision's ``reason`` names
the audience it matched and why (DESIGN.md §5). This runs on the request path for every matched
visitor, so formatting repeated lists is cached. Evaluation is :mod:`personalization.decision.audiences`.
"""

from __future__ import annotations

import math
from typing import Any

from personalization.decision.audience_values import get_path, js_type, num_str, truthy
from personalization.decision.audiences import is_operator_object

__all__ = ["explain_condition", "format_value"]

# --------------------------------------------------------------------------------------------------
# Explanation (decision reasons marketers read)
# --------------------------------------------------------------------------------------------------

_EXPLAIN_MAX = 200
_SYMBOLS = {
    "$eq": "=", "$ne": "≠", "$lt": "<", "$lte": "≤", "$gt": ">", "$gte": "≥",
    "$veq": "=", "$vne": "≠", "$vlt": "<", "$vlte": "≤", "$vgt": ">", "$vgte": "≥",
    "$in": "in", "$nin": "not in", "$ini": "in", "$nini": "not in",
    "$inGroup": "in group", "$notInGroup": "not in group",
    "$regex": "matches", "$regexi": "matches",
    "$all": "has all of", "$alli": "has all of",
}  # fmt: skip


def format_value(x: object) -> str:
    """A value as a marketer reads it: floats to 2 decimals, strings bare, short lists."""
    if type(x) is str:  # the common case (country, channel, plan) first: the same result, sooner
        return x if len(x) <= 40 else x[:39] + "…"
    if x is None:
        return "(not set)"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float):
        if not math.isfinite(x):
            return num_str(x)
        s = f"{x:.2f}".rstrip("0").rstrip(".")
        return "0" if s == "-0" else s
    if isinstance(x, int):
        return str(x)
    if isinstance(x, str):
        return x if len(x) <= 40 else x[:39] + "…"
    if isinstance(x, (list, tuple)):
        key = tuple(x) if len(x) <= 16 else None
        if key is not None:
            try:
                cached = _FMT_SEQ.get(key)
            except TypeError:  # unhashable items (nested lists or objects): format every time
                key = cached = None
            if cached is not None:
                return cached
        shown = ", ".join(format_value(v) for v in x[:6])
        text = f"[{shown}{', …' if len(x) > 6 else ''}]"
        # Lists of strings (countries, channels, plans) repeat on every request: keep their text.
        # Only all-string keys are stored, and a string never equals a non-string, so a lookup
        # can only ever hit a list that formats identically.
        if key is not None and len(_FMT_SEQ) < 4096 and all(type(v) is str for v in key):
            _FMT_SEQ[key] = text
        return text
    if isinstance(x, dict):
        return "{…}"
    return str(x)


_FMT_SEQ: dict[tuple[object, ...], str] = {}


def _explain_clause(subject: str, actual: object, clause: object, show_actual: bool = True) -> str:
    """``subject actual op expected`` for each operator of one value clause.

    ``show_actual=False`` describes only the shape (used inside ``$elemMatch``, where there is no
    single actual value to show).
    """
    shown = f" {format_value(actual)}" if show_actual else ""
    if not is_operator_object(clause):
        return f"{subject}{shown} = {format_value(clause)}"
    parts: list[str] = []
    for op, arg in clause.items():  # type: ignore[union-attr]
        if op == "$exists":
            parts.append(f"{subject} {'exists' if truthy(arg) else 'does not exist'}")
        elif op == "$not":
            parts.append(f"not ({_explain_clause(subject, actual, arg, show_actual)})")
        elif op == "$size":
            size = len(actual) if isinstance(actual, (list, tuple)) else None
            parts.append(_explain_clause(f"{subject} size", size, arg, show_actual))
        elif op == "$type":
            parts.append(f"{subject} type{f' {js_type(actual)}' if show_actual else ''} = {format_value(arg)}")
        elif op == "$elemMatch":
            if is_operator_object(arg):
                inner = _explain_clause("item", None, arg, show_actual=False)
            else:
                inner = _explain({}, arg, show_actual=False) if isinstance(arg, dict) else "?"
            parts.append(f"{subject} has an item where ({inner})")
        elif op in _SYMBOLS:
            parts.append(f"{subject}{shown} {_SYMBOLS[op]} {format_value(arg)}")
        else:
            parts.append(f"{subject} {op} {format_value(arg)} (unknown operator)")
    return ", ".join(parts)


def _explain(attributes: dict[str, Any], condition: dict[str, Any], show_actual: bool = True) -> str:
    parts: list[str] = []
    for key, value in condition.items():
        if key in ("$or", "$and", "$nor") and isinstance(value, list):
            label = {"$or": "any of", "$and": "all of", "$nor": "none of"}[key]
            inner = "; ".join(_explain(attributes, sub, show_actual) if isinstance(sub, dict) else "?" for sub in value)
            parts.append(f"{label} ({inner})")
        elif key == "$not" and isinstance(value, dict):
            parts.append(f"not ({_explain(attributes, value, show_actual)})")
        else:
            parts.append(_explain_clause(str(key), get_path(attributes, str(key)), value, show_actual))
    return ", ".join(parts)


def explain_condition(attributes: dict[str, Any], condition: dict[str, Any]) -> str:
    """A short phrase of what ``condition`` compared, for a marketer-readable decision reason.

    E.g. ``segments.price_sensitive 0.81 ≥ 0.6, country US in [CA, US]``. It describes the
    comparisons (with the visitor's actual values), not whether they passed: pair it with
    :func:`eval_condition`. At most 200 characters, truncated with ``…``.
    """
    if not isinstance(condition, dict):
        return "(invalid condition)"
    try:
        text = _explain(attributes, condition) or "everyone"
    except RecursionError:
        text = "(condition nested too deeply)"
    return text if len(text) <= _EXPLAIN_MAX else text[: _EXPLAIN_MAX - 1] + "…"
