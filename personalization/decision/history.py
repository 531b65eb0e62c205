"""The visitor's bounded history as audience attributes, parsed only when a rule reads it.

Why lazily: the history hash comes back with the profile on every decision (same round trip), but
most audiences never look at it. So ``history`` in the attribute document is a ``dict`` that fills
itself on first access — an audience over ``country`` never parses a timestamp — and counts over a
time window are worked out when a condition asks for that window, from the timestamps kept::

    "history": {
      "pages":     [{"path": "/pricing", "url": "https://shop.example/pricing", "count": 3,
                     "last": 1767000000.0, "within": {"7d": 2, "12h": 0, ...}}, ...],  # latest first
      "events":    {"signup": {"count": 2, "last": ..., "within": {...}}, ...},
      "any_page":  {"count": 9, "within": {...}},
      "any_event": {"count": 4, "within": {...}},
      "views":     {"path~pre~%2Fgarden": {"count": 5, "within": {...}}, ...}
    }

``views.<query>`` adds up the views of every kept page the query matches — what a Ninetailed "has
viewed a page whose path starts with /garden 3 times" counts, which ``$elemMatch`` over single pages
cannot (GrowthBook has no operator that sums). A query is ``<url|path>~<op>~<value>`` joined by ``&``
(all must hold); ops ``eq``, ``ne``, ``has``, ``nhas`` (contains / does not), ``pre``, ``suf`` (starts /
ends with), ``in``, ``nin`` (values separated by ``|``); values are percent-encoded, dots included
(:func:`view_query` writes one), so a query is one step of an attribute path.

``within.<n><unit>`` (units ``s``, ``m``, ``h``, ``d``, ``w``; e.g. ``within.7d``) is how many of the kept
timestamps are at most that long before ``now``: exact up to the number of timestamps kept per page
or event (:mod:`personalization.store.visitor_history` says how many), a lower bound beyond. The stored
layout (one hash field per page or event, ``"<count> <ts> <ts> …"``) is written by the event script
and described in :mod:`personalization.store.visitor_history`. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "EVENT_PREFIX",
    "PAGE_PREFIX",
    "Window",
    "history_attributes",
    "parse_entry",
    "view_query",
    "window_seconds",
]

#: Hash field prefixes: ``p:<page url without query>`` and ``e:<event name>``.
PAGE_PREFIX = "p:"
EVENT_PREFIX = "e:"

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}
_WINDOW = re.compile(r"^(\d{1,9}(?:\.\d{1,6})?)([smhdw])$")


def window_seconds(key: str) -> float | None:
    """``"7d"`` → 604800.0; ``None`` for anything that is not ``<number><s|m|h|d|w>``."""
    match = _WINDOW.match(key) if isinstance(key, str) else None
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


def parse_entry(raw: str) -> tuple[int, list[float]]:
    """A stored ``"<count> <ts> <ts> …"`` as (count, timestamps oldest first); junk reads as (0, [])."""
    parts = raw.split()
    try:
        count = int(parts[0]) if parts else 0
        stamps = [float(p) for p in parts[1:]]
    except ValueError:
        return 0, []
    return count, stamps


class Window(dict):  # type: ignore[type-arg]
    """``{"<n><unit>": count}`` for any window, computed (and remembered) when a condition reads it."""

    __slots__ = ("_now", "_stamps")

    def __init__(self, stamps: list[float], now: float) -> None:
        super().__init__()
        self._stamps = stamps
        self._now = now

    @property
    def stamps(self) -> list[float]:
        """The timestamps this window counts over (oldest first per page or event)."""
        return self._stamps

    def _count(self, key: object) -> int | None:
        seconds = window_seconds(key) if isinstance(key, str) else None
        if seconds is None:
            return None
        since = self._now - seconds
        count = sum(1 for ts in self._stamps if since <= ts <= self._now)
        dict.__setitem__(self, key, count)
        return count

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or self._count(key) is not None

    def __getitem__(self, key: str) -> int:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        count = self._count(key)
        if count is None:
            raise KeyError(key)
        return count

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[key] if self.__contains__(key) else default  # lazy: dict.get would skip it


class _History(dict):  # type: ignore[type-arg]
    """The ``history`` attribute: each top-level key built from the raw hash on first access."""

    __slots__ = ("_now", "_raw")
    _KEYS = ("pages", "events", "any_page", "any_event", "views")

    def __init__(self, raw: Mapping[str, str], now: float) -> None:
        super().__init__()
        self._raw = raw
        self._now = now

    def _build(self, key: object) -> bool:
        if key not in self._KEYS:
            return False
        if not dict.__contains__(self, "events"):
            self._materialise()
        return True

    def _materialise(self) -> None:
        pages: list[dict[str, Any]] = []
        events: dict[str, dict[str, Any]] = {}
        page_stamps: list[float] = []
        event_stamps: list[float] = []
        page_total = event_total = 0
        for field, raw in self._raw.items():
            is_page = field.startswith(PAGE_PREFIX)
            if not is_page and not field.startswith(EVENT_PREFIX):
                continue
            count, stamps = parse_entry(raw)
            if is_page:
                url = field[len(PAGE_PREFIX):]
                pages.append(_record(count, stamps, self._now, url=url, path=_path_of(url)))
                page_stamps += stamps
                page_total += count
            else:
                events[field[len(EVENT_PREFIX):]] = _record(count, stamps, self._now)
                event_stamps += stamps
                event_total += count
        pages.sort(key=lambda page: page["last"] or 0.0, reverse=True)
        dict.update(
            self,
            pages=pages,
            events=events,
            any_page={"count": page_total, "within": Window(page_stamps, self._now)},
            any_event={"count": event_total, "within": Window(event_stamps, self._now)},
            views=_Views(pages, self._raw, self._now),
        )

    def __contains__(self, key: object) -> bool:
        return self._build(key)

    def __getitem__(self, key: str) -> Any:
        if not self._build(key):
            raise KeyError(key)
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[key] if self.__contains__(key) else default  # lazy: dict.get would skip it

    def __iter__(self) -> Iterator[str]:
        self._build("pages")
        return dict.__iter__(self)

    def __len__(self) -> int:
        return len(self._KEYS)

    def keys(self):  # type: ignore[no-untyped-def]
        self._build("pages")
        return dict.keys(self)

    def items(self):  # type: ignore[no-untyped-def]
        self._build("pages")
        return dict.items(self)

    def values(self):  # type: ignore[no-untyped-def]
        self._build("pages")
        return dict.values(self)

    def __repr__(self) -> str:
        self._build("pages")
        return dict.__repr__(self)


_MATCH: dict[str, Callable[[str, list[str]], bool]] = {
    "eq": lambda actual, values: actual == values[0],
    "ne": lambda actual, values: actual != values[0],
    "has": lambda actual, values: values[0] in actual,
    "nhas": lambda actual, values: values[0] not in actual,
    "pre": lambda actual, values: actual.startswith(values[0]),
    "suf": lambda actual, values: actual.endswith(values[0]),
    "in": lambda actual, values: actual in values,
    "nin": lambda actual, values: actual not in values,
}


def view_query(parts: list[tuple[str, str, list[str]]]) -> str:
    """``[(attribute, op, values)]`` as a ``views`` key (the inverse of :func:`_parse_query`)."""
    return "&".join(f"{attribute}~{op}~{'|'.join(_encode(v) for v in values)}" for attribute, op, values in parts)


def _encode(value: str) -> str:
    return quote(value, safe="").replace(".", "%2E").replace("~", "%7E")


def _parse_query(key: object) -> list[tuple[str, Callable[[str, list[str]], bool], list[str]]] | None:
    if not isinstance(key, str) or not key:
        return None
    parsed = []
    for part in key.split("&"):
        pieces = part.split("~")
        if len(pieces) != 3 or pieces[0] not in ("url", "path") or pieces[1] not in _MATCH:
            return None
        parsed.append((pieces[0], _MATCH[pieces[1]], [unquote(v) for v in pieces[2].split("|")]))
    return parsed


class _Views(dict):  # type: ignore[type-arg]
    """``{"<query>": {"count", "within"}}``: views summed over the pages a query matches, on demand."""

    __slots__ = ("_now", "_pages", "_raw")

    def __init__(self, pages: list[dict[str, Any]], raw: Mapping[str, str], now: float) -> None:
        super().__init__()
        self._pages, self._raw, self._now = pages, raw, now

    def _sum(self, key: object) -> dict[str, Any] | None:
        query = _parse_query(key)
        if query is None:
            return None
        count, stamps = 0, []
        for page in self._pages:
            if all(match(page[attribute], values) for attribute, match, values in query):
                count += page["count"]
                stamps += page["within"].stamps
        summed = {"count": count, "within": Window(stamps, self._now)}
        dict.__setitem__(self, key, summed)
        return summed

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or self._sum(key) is not None

    def __getitem__(self, key: str) -> dict[str, Any]:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        summed = self._sum(key)
        if summed is None:
            raise KeyError(key)
        return summed

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[key] if self.__contains__(key) else default  # lazy: dict.get would skip it


def _record(count: int, stamps: list[float], now: float, **extra: str) -> dict[str, Any]:
    return {**extra, "count": count, "last": stamps[-1] if stamps else None, "within": Window(stamps, now)}


def _path_of(url: str) -> str:
    """The path of a stored page (a URL without query, or a bare path)."""
    if url.startswith("/"):
        return url
    _scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


def history_attributes(raw: Mapping[str, str], now: float) -> dict[str, Any]:
    """The ``history`` attribute over the raw hash fields (see the module docstring); lazy."""
    return _History(raw, now)
