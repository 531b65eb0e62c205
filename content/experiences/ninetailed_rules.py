"""Contentful Personalization (Ninetailed) audience rules as one GrowthBook condition.

An ``nt_audience``'s rules (``{"any": [{"all": [rule, …]}, …]}``; ``any``/``all`` nest) become one
condition over Vary's visitor attributes (``personalization.decision.context``) — see
:func:`rules_condition` and :data:`OPERATORS` for the rule-by-rule and operator-by-operator mapping.
Anything Vary cannot map is a problem, so the audience (and every experience using it) is switched
off by the caller: the baseline is shown rather than content to the wrong visitors. Pure: no I/O,
and the condition is checked by the ``validate_condition`` the caller passes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from content.experiences.base import ConditionValidator, is_number, text
from personalization.types import CONTINENTS

__all__ = ["OPERATORS", "RULE_TYPES", "rules_condition"]

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
_RELATIONAL = {"greaterThan": "$gt", "greaterThanInclusive": "$gte", "lessThan": "$lt",
               "lessThanInclusive": "$lte", "equal": "$eq", "notEqual": "$ne"}  # fmt: skip

#: Rule type → the visitor attribute(s) it reads.
RULE_TYPES: dict[str, str] = {
    "page": "page (url), page_path, page_query.<name>, utm.<name>, referrer — the current request",
    "track": "profile.goals.<event> ($gte count): Vary conversion goals",
    "identify": "traits.<key>",
    "location": "country, continent, city, region",
    "isReturningVisitor": "returning_visitor",
    "device": "device",
}
_UTM = ("campaign", "source", "medium", "term", "content")
_CONTINENT_NAMES = {
    "africa": "AF", "antarctica": "AN", "asia": "AS", "europe": "EU", "north america": "NA",
    "oceania": "OC", "australia": "OC", "south america": "SA",
}  # fmt: skip
_CONTINENT_CODES = frozenset(CONTINENTS.values())


def rules_condition(
    rules: object, validate_condition: ConditionValidator | None = None
) -> tuple[dict[str, Any], list[str]]:
    """``nt_rules`` as one GrowthBook condition, and the problems (empty when everything mapped).

    The mapped condition is checked with ``validate_condition`` when one is given.

    ``any`` → ``$or``, ``all`` → ``$and`` (a single item is not wrapped), a rule → its clause:

    ===================  ==========================================================================
    ``page``             ``conditions`` (or the rule's own ``key``/``operator``/``value``) on
                         ``url`` → ``page``, ``path`` → ``page_path``, ``referrer`` → ``referrer``,
                         ``utm_<name>`` → ``utm.<name>``, ``query.<name>`` → ``page_query.<name>``.
                         The current request's page: a ``count`` above 1 cannot be checked.
    ``track``            event ``key`` → ``profile.goals.<key>`` ``$gte`` ``count`` (default 1;
                         an ``operator`` compares the count instead). Event property conditions are
                         not supported.
    ``identify``         ``traits.<key>`` with the operator.
    ``location``         ``country``/``countryCode`` → ``country``, ``continent`` → ``continent``
                         (codes or names), ``city`` → ``city``, ``region``/``regionCode`` → ``region``.
    ``isReturningVisitor``  ``returning_visitor`` equal to ``value`` (default true).
    ``device``           ``device`` with the operator (lower-cased).
    ===================  ==========================================================================
    """
    problems: list[str] = []
    if not isinstance(rules, dict):
        return {}, ['the rules are not a JSON object such as {"any": [{"all": [...]}]}']
    condition = _node(rules, "rules", problems)
    if not problems and not condition:
        problems.append("there are no rules")
    if not problems and validate_condition is not None:
        problems.extend(str(p) for p in validate_condition(condition))
    return condition or {}, problems


def _node(node: object, where: str, problems: list[str]) -> dict[str, Any] | None:
    if not isinstance(node, dict):
        problems.append(f"{where}: expected a rule or an any/all group, got {_kind(node)}")
        return None
    if "any" in node or "all" in node:
        combinator = "any" if "any" in node else "all"
        items = node[combinator]
        if not isinstance(items, list):
            problems.append(f"{where}.{combinator}: expected a list")
            return None
        parts = [_node(item, f"{where}.{combinator}[{i}]", problems) for i, item in enumerate(items)]
        kept = [p for p in parts if p]
        if not kept:
            return {}
        if len(kept) == 1:
            return kept[0]
        return {"$or" if combinator == "any" else "$and": kept}
    return _rule(node, where, problems)


def _rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    kind = rule.get("type")
    if kind == "page":
        return _page_rule(rule, where, problems)
    if kind == "track":
        return _track_rule(rule, where, problems)
    if kind == "identify":
        key = text(rule.get("key"))
        if key is None:
            problems.append(f"{where}: an identify rule needs the trait's key")
            return None
        key = key.removeprefix("traits.")
        return _clause(f"traits.{key}", rule, where, problems)
    if kind == "location":
        return _location_rule(rule, where, problems)
    if kind == "isReturningVisitor":
        value = rule.get("value", True)
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            value = value.lower() in ("true", "yes")
        if not isinstance(value, bool):
            problems.append(f"{where}: isReturningVisitor needs true or false, got {value!r}")
            return None
        if _operator(rule) == "notEqual":
            value = not value
        return {"returning_visitor": value}
    if kind == "device":
        return _clause("device", rule, where, problems, normalise=lambda v: v.lower())
    problems.append(
        f"{where}: rule type {kind!r} is not supported (Vary maps {', '.join(RULE_TYPES)})"
        if kind else f"{where}: a rule without a type"
    )
    return None


def _page_rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    count = rule.get("count")
    if is_number(count) and count > 1:
        problems.append(f"{where}: a page rule counting {count:g} page views; Vary checks the page of "
                        "the current request only")
        return None
    if rule.get("when"):
        problems.append(f"{where}: 'when' conditions (time windows) are not supported")
        return None
    conditions = rule.get("conditions")
    if conditions is None:
        conditions = [rule] if rule.get("key") else []
    if not isinstance(conditions, list) or not conditions:
        problems.append(f"{where}: a page rule needs at least one condition on the URL, path, UTM, "
                        "query or referrer")
        return None
    clauses: list[dict[str, Any]] = []
    for i, condition in enumerate(conditions):
        here = f"{where}.conditions[{i}]" if condition is not rule else where
        if not isinstance(condition, dict):
            problems.append(f"{here}: expected a condition object")
            continue
        attribute = _page_attribute(condition)
        if attribute is None:
            problems.append(f"{here}: page condition key {condition.get('key')!r} is not one of url, "
                            "path, referrer, utm_campaign/source/medium/term/content, query.<name>")
            continue
        clause = _clause(attribute, condition, here, problems)
        if clause:
            clauses.append(clause)
    if len(clauses) != len(conditions):
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _page_attribute(condition: dict[str, Any]) -> str | None:
    key = text(condition.get("key"))
    if key is None:
        return None
    name = text(condition.get("name") or condition.get("parameter"))
    lowered = key.lower()
    if lowered == "url":
        return "page"
    if lowered == "path":
        return "page_path"
    if lowered == "referrer":
        return "referrer"
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


def _track_rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    event = text(rule.get("key") or rule.get("event"))
    if event is None:
        problems.append(f"{where}: a track rule needs the event's name")
        return None
    if "." in event:
        problems.append(f"{where}: event {event!r} has a dot, which a Vary goal name cannot address")
        return None
    if rule.get("conditions") or rule.get("when"):
        problems.append(f"{where}: conditions on the properties or time of event {event!r} are not "
                        "supported; Vary counts conversions per goal")
        return None
    count = rule.get("count", 1)
    if isinstance(count, str):
        count = _number(count)
    if not is_number(count) or count < 0:
        problems.append(f"{where}: track count {rule.get('count')!r} is not a number of times")
        return None
    operator = _operator(rule) or "greaterThanInclusive"
    op = _RELATIONAL.get(operator)
    if op is None:
        problems.append(f"{where}: operator {operator!r} cannot compare an event count")
        return None
    return {f"profile.goals.{event}": {op: count}}


def _location_rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    key = (text(rule.get("key")) or "").lower()
    if key in ("country", "countrycode"):
        return _coded_clause("country", rule, where, problems, _country_code,
                             "is not a two-letter country code (ISO 3166, e.g. DE)")
    if key == "continent":
        return _coded_clause("continent", rule, where, problems, _continent_code,
                             "is not a continent (use AF, AN, AS, EU, NA, OC or SA)")
    if key == "city":
        return _clause("city", rule, where, problems)
    if key in ("region", "regioncode"):
        return _clause("region", rule, where, problems)
    problems.append(f"{where}: location key {rule.get('key')!r} is not supported (country, continent, "
                    "city or region)")
    return None


def _country_code(value: str) -> tuple[str, bool]:
    value = value.strip()
    return value.upper(), len(value) == 2 and value.isalpha()


def _continent_code(value: str) -> tuple[str, bool]:
    code = _CONTINENT_NAMES.get(value.strip().lower(), value.strip().upper())
    return code, code in _CONTINENT_CODES


def _coded_clause(
    attribute: str,
    rule: dict[str, Any],
    where: str,
    problems: list[str],
    code_of: Callable[[str], tuple[str, bool]],
    not_a_code: str,
) -> dict[str, Any] | None:
    """A clause over codes (country, continent): values normalised by ``code_of``, which also says
    whether the value is a code; values that are not are one problem."""
    bad: list[object] = []

    def normalise(value: str) -> str:
        code, known = code_of(value)
        if not known:
            bad.append(value)
        return code

    clause = _clause(attribute, rule, where, problems, normalise=normalise)
    if bad:
        problems.append(f"{where}: {', '.join(map(repr, bad))} {not_a_code}")
        return None
    return clause


def _clause(
    attribute: str,
    rule: dict[str, Any],
    where: str,
    problems: list[str],
    normalise: Callable[[str], str] | None = None,
) -> dict[str, Any] | None:
    operator = _operator(rule) or "equal"
    value = rule.get("value")
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
        problems.append(f"{where}: operator {operator!r} needs a single value, got {_kind(value)}")
        return None
    if operator in ("contains", "notContains", "startsWith", "endsWith"):
        escaped = re.escape(value if isinstance(value, str) else _js_text(value))
        pattern = {"startsWith": f"^{escaped}", "endsWith": f"{escaped}$"}.get(operator, escaped)
        if operator == "notContains":
            return {attribute: {"$not": {"$regex": pattern}}}
        return {attribute: {"$regex": pattern}}
    op = _RELATIONAL.get(operator)
    if op is None:
        problems.append(f"{where}: operator {operator!r} is not supported "
                        f"({', '.join(OPERATORS)})")
        return None
    if op in ("$gt", "$gte", "$lt", "$lte") and isinstance(value, str):
        number = _number(value)
        value = number if number is not None else value  # "10" > "9" compares as numbers
    return {attribute: {op: value}}


def _operator(rule: dict[str, Any]) -> str | None:
    operator = text(rule.get("operator"))
    return _ALIASES.get(operator, operator) if operator else None


def _number(value: str) -> float | int | None:
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() else number


def _js_text(value: object) -> str:
    """A scalar as JavaScript's ``String()`` writes it (what the evaluator matches against)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(type(value), "a number")
