"""Contentful Personalization (Ninetailed) audience rules as one GrowthBook condition.

An ``nt_audience``'s rules (``{"any": [{"all": [rule, …]}, …]}``; ``any``/``all`` nest) become one
condition over Vary's visitor attributes (``personalization.decision.context``) — see
:func:`rules_condition` for the rule-by-rule mapping and
:mod:`content.experiences.ninetailed_clauses` for operators, ``"*"`` and where-condition keys.
The rules are read as the audience builder writes them (``"count": "1"`` as text, event names in
``value`` with an empty ``key``, where-condition keys as objects), and as Vary's own demo writes them.
Anything Vary cannot map is a problem naming its path inside the rules, so the audience (and every
experience using it) is switched off by the caller: the baseline is shown rather than content to the
wrong visitors. Pure: no I/O, and the condition is checked by the ``validate_condition`` the caller
passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from content.experiences.base import ConditionValidator, text
from content.experiences.ninetailed_clauses import (
    ANY_VALUE,
    OPERATORS,
    RELATIONAL,
    clause,
    kind_of,
    list_aware_contains,
    number,
    operator_of,
    where_attribute,
)
from content.experiences.ninetailed_history import (
    EVENT_STAMPS,
    PAGE_STAMPS,
    count_within,
    decidable,
    event_clause,
    page_clause,
    query_part,
    window_of,
)
from personalization.types import CONTINENTS

__all__ = ["OPERATORS", "RULE_TYPES", "rules_condition"]

#: Rule type → the visitor attribute(s) it reads.
RULE_TYPES: dict[str, str] = {
    "page": "page (url), page_path, page_query.<name>, utm.<name>, referrer — the current request; "
            "history.views.<query> (count, within.<window>) for pages viewed before, counts and "
            "'when' windows; profile.page_views / history.any_page when every condition is \"*\"",
    "track": "profile.goals.<event> (count): Vary conversion goals; profile.conversions for any event; "
             "history.events.<event>.within.<window> / history.any_event for 'when' windows",
    "identify": "traits.<key>",
    "location": "country, continent, city, region",
    "isReturningVisitor": "returning_visitor",
    "device": "device",
}
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

    ======================  =======================================================================
    ``page``                "has viewed page": where ``conditions`` (or the rule's own
                            ``key``/``operator``/``value``) on ``url`` → ``page``, ``path`` →
                            ``page_path``, ``referrer`` → ``referrer``, UTM → ``utm.<name>``, query
                            parameter → ``page_query.<name>``, checked on the current request's page.
                            Viewed once: also a page viewed before (the history's
                            ``history.views.<query>.count``, a query on ``url``/``path``). Other
                            counts ("fewer than", N times) and ``when`` windows: that ``count`` or
                            ``within.<window>`` (:mod:`content.experiences.ninetailed_history`).
                            Every condition ``"*"`` (any page): ``profile.page_views`` compared with
                            ``count`` (or the current request has a page); in a window,
                            ``history.any_page.within.<window>``.
    ``track``               event (``key``, else ``value``) → ``profile.goals.<event>`` ``$gte``
                            ``count`` (default 1; ``operator`` compares the count); no event, or
                            ``"*"``: any event → ``profile.conversions``. With ``when``:
                            ``history.events.<event>.within.<window>`` (``history.any_event``).
                            Property conditions are not supported.
    ``identify``            ``traits.<key>`` with the operator (``"*"``: the trait is set).
    ``location``            ``country``/``countryCode`` → ``country``, ``continent`` → ``continent``
                            (codes or names), ``city`` → ``city``, ``region``/``regionCode`` →
                            ``region``.
    ``isReturningVisitor``  ``returning_visitor`` equal to ``value`` (default true).
    ``device``              ``device`` with the operator (lower-cased).
    ======================  =======================================================================
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
        problems.append(f"{where}: expected a rule or an any/all group, got {kind_of(node)}")
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
    handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
    if handler is not None:
        return handler(rule, where, problems)
    problems.append(
        f"{where}: rule type {kind!r} is not supported (Vary maps {', '.join(RULE_TYPES)})"
        if kind else f"{where}: a rule without a type"
    )
    return None


def _identify_rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    key = text(rule.get("key"))
    if key is None:
        problems.append(f"{where}: an identify rule needs the trait's key")
        return None
    attribute = f"traits.{key.removeprefix('traits.')}"
    value, operator = rule.get("value"), operator_of(rule) or "equal"
    if isinstance(value, str) and value.lower() in ("true", "false") and operator in ("equal", "notEqual"):
        # The builder's value box is text; a trait sent as JSON true/false means the same.
        either = [value, value.lower() == "true"]
        return {attribute: {"$in" if operator == "equal" else "$nin": either}}
    if operator in ("contains", "notContains") and value not in (None, "", ANY_VALUE) and not isinstance(value, (dict, list)):
        return list_aware_contains(attribute, value, negate=operator == "notContains")
    return clause(attribute, rule, where, problems)


def _returning_rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    value = rule.get("value", True)
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        value = value.lower() in ("true", "yes")
    if not isinstance(value, bool):
        problems.append(f"{where}: isReturningVisitor needs true or false, got {value!r}")
        return None
    if operator_of(rule) == "notEqual":
        value = not value
    return {"returning_visitor": value}


def _device_rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    return clause("device", rule, where, problems, normalise=lambda v: v.lower())


def _count(rule: dict[str, Any], where: str, problems: list[str]) -> tuple[str, float] | None:
    """The rule's count comparison (``operator``, default "at least", and ``count``, default 1)."""
    raw = rule.get("count", 1)
    count = number(raw) if raw not in (None, "") else 1
    if count is None or count < 0:
        problems.append(f"{where}: count {raw!r} is not a number of times")
        return None
    operator = operator_of(rule) or "greaterThanInclusive"
    op = RELATIONAL.get(operator)
    if op is None:
        problems.append(f"{where}: operator {operator!r} cannot compare a count")
        return None
    return op, count


def _one_view_is_enough(op: str, count: float) -> bool:
    """Whether one view (the current request's page) satisfies "viewed ``op`` ``count`` times"."""
    return (op == "$gte" and count <= 1) or (op == "$gt" and count < 1) or (op == "$eq" and count == 1)


def _page_rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    window = None
    if rule.get("when"):
        window = window_of(rule["when"], f"{where}.when", problems)
        if window is None:
            return None
    conditions = rule.get("conditions")
    if conditions is None or conditions == []:
        conditions = [rule] if isinstance(rule.get("key"), dict) or text(rule.get("key")) else []
    if not isinstance(conditions, list) or not conditions:
        problems.append(f"{where}: a page rule needs at least one condition on the URL, path, UTM, "
                        "query or referrer")
        return None
    is_own = conditions == [rule]
    counted = ({"operator": "greaterThanInclusive", "count": rule.get("count")} if is_own else rule)
    comparison = _count(counted, where, problems)
    if comparison is None:
        return None
    op, count = comparison
    if window is not None and not decidable(op, count, PAGE_STAMPS):
        problems.append(f"{where}: {op} {count:g} page views within {window}: Vary keeps the last "
                        f"{PAGE_STAMPS} views of each page, so a window can tell counts apart up to {PAGE_STAMPS}")
        return None
    if all(isinstance(c, dict) and c.get("value") == ANY_VALUE and c.get("operator", "equal") == "equal"
           for c in conditions):
        if window is not None:  # "has viewed any page N times in the last …"
            return {f"history.any_page.{count_within(window)}": {op: count}}
        views = {"profile.page_views": {op: count}}  # "has viewed any page N times"
        return {"$or": [{"page": {"$exists": True}}, views]} if _one_view_is_enough(op, count) else views
    current, query = _page_clauses(conditions, where, is_own, problems)
    if current is None:
        return None
    if window is None and _one_view_is_enough(op, count):
        # Viewed once: the current request's page, or a page viewed before (the history).
        if query is None:
            return current
        return {"$or": [current, page_clause(query, op, count, None)]}
    if query is None:
        problems.append(f"{where}: a page rule counting views ({op} {count:g}"
                        f"{f' within {window}' if window else ''}) can only read the URL (without query "
                        "string) and path: Vary's page history keeps no query parameters, UTM or referrer")
        return None
    return page_clause(query, op, count, window)


def _page_clauses(
    conditions: list[Any], where: str, is_own: bool, problems: list[str]
) -> tuple[dict[str, Any] | None, list[tuple[str, str, list[str]]] | None]:
    """The where conditions on the current request (one clause), and the same conditions as a query
    over the pages of the history (``None`` when one of them reads what the history does not keep)."""
    clauses: list[dict[str, Any]] = []
    query: list[tuple[str, str, list[str]]] | None = []
    for i, condition in enumerate(conditions):
        here = where if is_own else f"{where}.conditions[{i}]"
        if not isinstance(condition, dict):
            problems.append(f"{here}: expected a condition object")
            continue
        attribute = where_attribute(condition)
        if attribute is None:
            problems.append(f"{here}: page condition key {_key_name(condition.get('key'))!r} is not "
                            "one of URL, path, referrer, UTM parameter (campaign, source, medium, "
                            "term, content) or query parameter")
            continue
        if condition.get("value") in (None, "") and operator_of(condition) not in ("exists", "notExists"):
            problems.append(f"{here}: the condition on {_key_name(condition.get('key'))!r} has no value "
                            "(use \"*\" for any value)")
            continue
        part = clause(attribute, condition, here, problems)
        if part:
            clauses.append(part)
            asked = query_part(attribute, condition)
            if query is None or asked is None:
                query = None
            elif asked is not True:
                query.append(asked)
    if len(clauses) != len(conditions):
        return None, None
    return (clauses[0] if len(clauses) == 1 else {"$and": clauses}), query


def _key_name(key: object) -> object:
    if isinstance(key, dict):
        return key.get("id") or key.get("key") or key.get("label")
    return key


def _track_rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    event = text(rule.get("key")) or text(rule.get("event")) or text(rule.get("value"))
    if event == ANY_VALUE:
        event = None
    if event is not None and "." in event:
        problems.append(f"{where}: event {event!r} has a dot, which a Vary goal name cannot address")
        return None
    if rule.get("conditions"):
        problems.append(f"{where}: conditions on the properties of event {event or 'any event'!r} are not "
                        "supported: Vary's conversion events carry a goal and a value, no properties")
        return None
    window = None
    if rule.get("when"):
        window = window_of(rule["when"], f"{where}.when", problems)
        if window is None:
            return None
    comparison = _count(rule, where, problems)
    if comparison is None:
        return None
    op, count = comparison
    if window is None:
        return {f"profile.goals.{event}" if event else "profile.conversions": {op: count}}
    if not decidable(op, count, EVENT_STAMPS):
        problems.append(f"{where}: {op} {count:g} events within {window}: Vary keeps the last {EVENT_STAMPS} "
                        f"times of each event, so a window can tell counts apart up to {EVENT_STAMPS}")
        return None
    return event_clause(event, op, count, window)


def _location_rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    key = (text(rule.get("key")) or "").lower()
    if key in ("country", "countrycode"):
        return _coded_clause("country", rule, where, problems, _country_code,
                             "is not a two-letter country code (ISO 3166, e.g. DE)")
    if key == "continent":
        return _coded_clause("continent", rule, where, problems, _continent_code,
                             "is not a continent (use AF, AN, AS, EU, NA, OC or SA)")
    if key == "city":
        return clause("city", rule, where, problems)
    if key in ("region", "regioncode"):
        return clause("region", rule, where, problems)
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
    whether the value is a code; values that are not are one problem (``"*"`` is any code)."""
    bad: list[object] = []

    def normalise(value: str) -> str:
        code, known = code_of(value)
        if not known:
            bad.append(value)
        return code

    result = clause(attribute, rule, where, problems, normalise=normalise)
    if bad:
        problems.append(f"{where}: {', '.join(map(repr, bad))} {not_a_code}")
        return None
    return result


_Handler = Callable[[dict[str, Any], str, list[str]], "dict[str, Any] | None"]
_HANDLERS: dict[str, _Handler] = {
    "page": _page_rule,
    "track": _track_rule,
    "identify": _identify_rule,
    "location": _location_rule,
    "isReturningVisitor": _returning_rule,
    "device": _device_rule,
}
