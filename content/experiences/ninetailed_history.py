"""Ninetailed rules over a visitor's past — page and event counts, "fewer than", ``when`` windows — as
GrowthBook clauses over Vary's ``history`` attribute.

Why a module of its own: these rules cannot be checked on the current request; they read the bounded
per-visitor history Vary keeps in Redis (``personalization.store.visitor_history``), exposed to
audiences as ``history.views.<query>`` (views added up over the kept pages a query on ``url`` — without
query string — and ``path`` matches: ``count``, ``within.<window>``), ``history.events.<event>`` and
``history.any_page`` / ``history.any_event`` (``personalization.decision.history``). Counts inside a window come from the timestamps kept, so a
windowed comparison is only exact up to that many: a rule that would need more is a problem rather
than a silently wrong audience. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from content.experiences.ninetailed_clauses import (
    ANY_VALUE,
    NEGATIVE,
    js_text,
    kind_of,
    number,
    operator_of,
)

__all__ = ["EVENT_STAMPS", "PAGE_STAMPS", "RECORD_ATTRIBUTES", "count_within", "decidable", "event_clause",
           "page_clause", "query_part", "view_query", "window_of"]  # fmt: skip

#: Timestamps the history keeps per page and per event name (``personalization.store.visitor_history``
#: ``PAGE_STAMPS`` / ``EVENT_STAMPS``; content may not import the store, a test checks they agree).
PAGE_STAMPS = 10
EVENT_STAMPS = 20
#: Current-request attribute → the page record's attribute in ``history.pages``.
RECORD_ATTRIBUTES = {"page": "url", "page_path": "path"}

_UNIT_SECONDS = {
    "s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
    "d": 86_400, "day": 86_400, "w": 604_800, "week": 604_800, "month": 30 * 86_400,
}  # fmt: skip
#: ``when`` operators that mean "within the last …" (anything else, e.g. "more than … ago", is a problem).
_WITHIN = {None, "inTheLast", "inLast", "withinLast", "within", "last", "lessThan", "lessThanInclusive"}
#: Ninetailed operator → the history's page-matching op (``personalization.decision.history``).
_QUERY_OPS = {"equal": "eq", "notEqual": "ne", "contains": "has", "notContains": "nhas", "startsWith": "pre",
              "endsWith": "suf", "in": "in", "notIn": "nin"}  # fmt: skip
_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s*$")


def window_of(when: object, where: str, problems: list[str]) -> str | None:
    """A ``when`` as a window key (``"7d"``, ``"12h"``, ``"90m"``, ``"45s"``), ``None`` (and a problem)
    when it is not "within the last <n> <unit>".

    Read forms: a number (days), text (``"7d"``, ``"7 days"``), or an object with the amount in
    ``value`` / ``amount`` / ``count`` / ``duration`` and the unit in ``unit`` / ``timeUnit`` /
    ``period`` (default days) — or the unit as the key (``{"days": 7}``) — and an optional ``operator``
    / ``type`` such as ``inTheLast``. Units: seconds, minutes, hours, days, weeks, months (30 days).
    """
    amount: object = None
    unit: object = "day"
    if isinstance(when, dict):
        operator = when.get("operator", when.get("type"))
        if operator not in _WITHIN:
            problems.append(f"{where}: 'when' operator {operator!r} is not supported (only \"within the last "
                            "<n> <unit>\" windows: inTheLast)")
            return None
        for name in ("value", "amount", "count", "duration"):
            if name in when:
                amount = when[name]
                break
        unit = when.get("unit", when.get("timeUnit", when.get("period", "day")))
        if amount is None:
            for name in when:
                if isinstance(name, str) and _unit(name) is not None:
                    amount, unit = when[name], name
                    break
    elif isinstance(when, str) and _TEXT.match(when.lower()):
        match = _TEXT.match(when.lower())
        assert match is not None
        amount, unit = match.group(1), match.group(2)
    else:
        amount = when
    seconds_per = _unit(unit) if isinstance(unit, str) else None
    value = number(amount)
    if seconds_per is None or value is None or value <= 0:
        problems.append(f"{where}: 'when' {when!r} is not a time window such as {{\"operator\": \"inTheLast\", "
                        f"\"value\": 7, \"unit\": \"days\"}} (got {kind_of(when)})")
        return None
    seconds = round(value * seconds_per)
    for suffix, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"


def _unit(name: str) -> int | None:
    lowered = name.strip().lower()
    return _UNIT_SECONDS.get(lowered, _UNIT_SECONDS.get(lowered.removesuffix("s")))


def decidable(op: str, count: float, kept: int) -> bool:
    """Whether ``<count in window> op count`` is decided exactly when at most ``kept`` timestamps
    are kept (the count in a window is exact up to ``kept``, and "at least ``kept``" beyond)."""
    return count <= kept if op in ("$gte", "$lt") else count < kept


def count_within(window: str | None) -> str:
    """The record attribute holding the count: all-time ``count``, or ``within.<window>``."""
    return "count" if window is None else f"within.{window}"


def page_clause(query: list[tuple[str, str, list[str]]], op: str, count: float, window: str | None) -> dict[str, Any]:
    """"Viewed pages matching ``query`` ``op count`` times (in the window)": the views of every kept
    page the query matches, added up (``history.views.<query>``; no query: any page). A visitor with
    no such page has 0 views, which "fewer than" counts as it should."""
    if not query:
        return {f"history.any_page.{count_within(window)}": {op: count}}
    return {f"history.views.{view_query(query)}.{count_within(window)}": {op: count}}


def query_part(attribute: str, condition: dict[str, Any]) -> tuple[str, str, list[str]] | None | bool:
    """One where condition as a part of a ``views`` query: ``(record attribute, op, values)``; ``True``
    when it holds for every page (``"*"``, ``exists``); ``None`` when the history cannot answer it."""
    record = RECORD_ATTRIBUTES.get(attribute)
    operator = operator_of(condition) or "equal"
    value = condition.get("value")
    if record is None:
        return None
    if operator == "exists" or (value == ANY_VALUE and operator not in NEGATIVE and operator in _QUERY_OPS):
        return True
    code = _QUERY_OPS.get(operator)
    if code is None or value == ANY_VALUE or value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if code in ("in", "nin") and not values:
        return None
    if code not in ("in", "nin") and len(values) != 1:
        return None
    if any(isinstance(v, (dict, list)) or v is None for v in values):
        return None
    return record, code, [v if isinstance(v, str) else js_text(v) for v in values]


def view_query(parts: list[tuple[str, str, list[str]]]) -> str:
    """The ``views`` key of a query (``personalization.decision.history`` reads it; a test checks both
    ends agree): ``<url|path>~<op>~<value>`` joined by ``&``, values percent-encoded, dots included."""
    return "&".join(f"{attribute}~{op}~{'|'.join(_encode(v) for v in values)}" for attribute, op, values in parts)


def _encode(value: str) -> str:
    return quote(value, safe="").replace(".", "%2E").replace("~", "%7E")


def event_clause(event: str | None, op: str, count: float, window: str) -> dict[str, Any]:
    """"Sent ``event`` (any event: ``None``) ``op count`` times within ``window``"."""
    attribute = f"history.events.{event}.{count_within(window)}" if event else f"history.any_event.{count_within(window)}"
    if _holds_for_zero(op, count):
        return {"$or": [{attribute: {"$exists": False}}, {attribute: {op: count}}]}
    return {attribute: {op: count}}


def _holds_for_zero(op: str, count: float) -> bool:
    return {"$gte": 0 >= count, "$gt": 0 > count, "$lt": 0 < count, "$lte": 0 <= count,
            "$eq": count == 0, "$ne": count != 0}[op]  # fmt: skip
