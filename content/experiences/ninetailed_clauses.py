"""One Ninetailed comparison (an operator and a value on one visitor attribute) as a GrowthBook clause.

Why a module of its own: every rule type of Contentful Personalization's audience builder ends in the
same comparison — ``{"operator": "contains", "value": "pricing"}`` on a trait, a location field or a
page's "where" condition — and the builder writes it in two forms that must mean the same thing
everywhere: a plain value, and ``"*"`` for "any value" (the field is set), which is never the literal
text ``*``. Where-condition keys come as text (``"url"``, ``"utm_source"``, ``"query.ref"``: Vary's
own demo and hand-written rules) or as the builder's objects (``{"id": "context_page_url",
"category": {"name": "url"}}``, ``{"id": "context_page_query", "value": "<parameter>"}``);
:func:`where_attribute` reads both. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from content.experiences.base import text

__all__ = ["ANY_VALUE", "NEGATIVE", "OPERATORS", "WHERE_KEYS", "clause", "js_text", "kind_of",
           "list_aware_contains", "number", "operator_of", "where_attribute"]  # fmt: skip

#: The builder's "any value": the field is set (``exists``), whatever its value.
ANY_VALUE = "*"

#: Ninetailed operator → how its value becomes a GrowthBook clause.
OPERATORS: dict[str, str] = {
    "equal": "$eq",
    "notEqual": "$ne",
    "contains": "$regex (escaped value)",
    "notContains": "$not $regex (escaped value)",
    "startsWith": "$regex ^value",
    "endsWith": "$regex value$",
    "greaterThan": "$gt",
    "greaterThanInclusive": "$gte",
    "lessThan": "$lt",
    "lessThanInclusive": "$lte",
    "in": "$in",
    "notIn": "$nin",
    "exists": "$exists true",
    "notExists": "$exists false",
}
_ALIASES = {"equals": "equal", "notEquals": "notEqual", "is": "equal", "isNot": "notEqual"}
RELATIONAL = {"greaterThan": "$gt", "greaterThanInclusive": "$gte", "lessThan": "$lt",
              "lessThanInclusive": "$lte", "equal": "$eq", "notEqual": "$ne"}  # fmt: skip
#: Operators that hold for a visitor without the field: ``"*"`` under them means "not set".
NEGATIVE = frozenset({"notEqual", "notContains", "notIn", "notExists"})

_UTM = ("campaign", "source", "medium", "term", "content")
#: The builder's where-condition ids (Segment-style context paths) → Vary attribute.
WHERE_KEYS: dict[str, str] = {
    "context_page_url": "page",
    "context_page_path": "page_path",
    "context_page_referrer": "referrer",
    "context_page_query": "page_query.<key.value>",
    **{f"context_campaign_{'name' if u == 'campaign' else u}": f"utm.{u}" for u in _UTM},
}
_CATEGORIES = {"url": "page", "path": "page_path", "referrer": "referrer"}


def where_attribute(condition: dict[str, Any]) -> str | None:
    """The attribute a page rule's where condition reads, ``None`` when Vary has no such attribute.

    Text keys: ``url``, ``path``, ``referrer``, ``utm_<name>``/``utm.<name>``, ``query.<name>`` (or
    ``query`` with ``name``/``parameter``). Object keys: by ``id`` (:data:`WHERE_KEYS`), else by
    ``category.name``; a query parameter's name is the object's ``value``.
    """
    key = condition.get("key")
    if isinstance(key, dict):
        return _object_attribute(key)
    return _text_attribute(condition)


def _object_attribute(key: dict[str, Any]) -> str | None:
    ident = (text(key.get("id")) or text(key.get("key")) or "").lower()
    category = key.get("category")
    category_name = (text(category.get("name")) if isinstance(category, dict) else None) or ""
    if ident == "context_page_query" or category_name == "query_parameter":
        name = text(key.get("value"))
        return f"page_query.{name}" if name and "." not in name else None
    if ident in WHERE_KEYS:
        return WHERE_KEYS[ident]
    if category_name == "utm_parameter":
        name = ident.removeprefix("context_campaign_").removeprefix("utm_")
        name = "campaign" if name == "name" else name
        return f"utm.{name}" if name in _UTM else None
    return _CATEGORIES.get(category_name)


def _text_attribute(condition: dict[str, Any]) -> str | None:
    key = text(condition.get("key"))
    if key is None:
        return None
    name = text(condition.get("name") or condition.get("parameter"))
    lowered = key.lower()
    if lowered in _CATEGORIES:
        return _CATEGORIES[lowered]
    for prefix in ("utm_", "utm."):
        if lowered.startswith(prefix) and lowered[len(prefix):] in _UTM:
            return f"utm.{lowered[len(prefix):]}"
    if lowered == "utm" and name and name.lower().removeprefix("utm_") in _UTM:
        return f"utm.{name.lower().removeprefix('utm_')}"
    if lowered.startswith("query.") and len(key) > 6:
        name = key[6:]
    elif lowered != "query":
        return None
    if not name or "." in name:
        return None
    return f"page_query.{name}"


def clause(
    attribute: str,
    rule: dict[str, Any],
    where: str,
    problems: list[str],
    normalise: Callable[[str], str] | None = None,
) -> dict[str, Any] | None:
    """``rule``'s ``operator`` and ``value`` on ``attribute`` (``equal`` when no operator is given).

    ``"*"`` as the value is "any value": ``{"$exists": true}``, or ``false`` under a negative operator
    (``notEqual`` / ``notContains`` / ``notIn``: "has no value"). ``normalise`` rewrites text values
    (codes to upper case, …). Problems are appended (with ``where``) and ``None`` returned.
    """
    operator = operator_of(rule) or "equal"
    value = rule.get("value")
    if value == ANY_VALUE or (isinstance(value, list) and ANY_VALUE in value and operator in ("in", "notIn")):
        if operator in ("exists", "notExists"):
            return {attribute: {"$exists": operator == "exists"}}
        if operator not in OPERATORS:
            problems.append(f"{where}: operator {operator!r} is not supported ({', '.join(OPERATORS)})")
            return None
        return {attribute: {"$exists": operator not in NEGATIVE}}
    if normalise is not None:
        if isinstance(value, str):
            value = normalise(value)
        elif isinstance(value, list):
            value = [normalise(v) if isinstance(v, str) else v for v in value]
    if operator in ("exists", "notExists"):
        return {attribute: {"$exists": operator == "exists"}}
    if operator in ("in", "notIn"):
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(v, (dict, list)) for v in values):
            problems.append(f"{where}: {operator} needs a list of values")
            return None
        return {attribute: {"$in" if operator == "in" else "$nin": values}}
    if value is None or isinstance(value, (dict, list)):
        problems.append(f"{where}: operator {operator!r} needs a single value, got {kind_of(value)}")
        return None
    if operator in ("contains", "notContains", "startsWith", "endsWith"):
        escaped = re.escape(value if isinstance(value, str) else js_text(value))
        pattern = {"startsWith": f"^{escaped}", "endsWith": f"{escaped}$"}.get(operator, escaped)
        if operator == "notContains":
            return {attribute: {"$not": {"$regex": pattern}}}
        return {attribute: {"$regex": pattern}}
    op = RELATIONAL.get(operator)
    if op is None:
        problems.append(f"{where}: operator {operator!r} is not supported ({', '.join(OPERATORS)})")
        return None
    if op in ("$gt", "$gte", "$lt", "$lte") and isinstance(value, str):
        parsed = number(value)
        value = parsed if parsed is not None else value  # "10" > "9" compares as numbers
    return {attribute: {op: value}}


def list_aware_contains(attribute: str, value: object, negate: bool = False) -> dict[str, Any]:
    """Ninetailed's ``contains`` on a trait, which may be a list (CDPs send ``["Process Management",
    …]``): on a list it is membership — an element equal to the value (text or, for a numeric value,
    the number) — and on anything else the substring match it always was. GrowthBook would read a
    ``$regex`` on a list as a match in its comma-joined text, so the regex is kept off lists."""
    text = value if isinstance(value, str) else js_text(value)
    candidates: list[object] = [value]
    parsed = number(value) if isinstance(value, str) else None
    if parsed is not None:
        candidates.append(parsed)
    either = {"$or": [
        {attribute: {"$not": {"$type": "array"}, "$regex": re.escape(text)}},
        {attribute: {"$elemMatch": {"$in": candidates}}},
    ]}  # fmt: skip
    return {"$not": either} if negate else either


def operator_of(rule: dict[str, Any]) -> str | None:
    """The rule's operator, with the builder's older spellings (``equals``, ``is``) read as today's."""
    operator = text(rule.get("operator"))
    return _ALIASES.get(operator, operator) if operator else None


def number(value: object) -> float | int | None:
    """A count or threshold written as a number or as text (the builder writes ``"count": "1"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value) if float(value).is_integer() else value


def js_text(value: object) -> str:
    """A scalar as JavaScript's ``String()`` writes it (what the evaluator matches against)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def kind_of(value: object) -> str:
    """What a value is, in words, for a problem message."""
    if value is None:
        return "nothing"
    return {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(type(value), "a number")
