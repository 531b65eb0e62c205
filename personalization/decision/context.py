"""Visitor context: normalise what the front end sent and build the attributes audiences see.

Audience conditions (GrowthBook syntax) read a flat-ish attribute document. Its shape is part of
Vary's public contract, because marketers write rules against it::

    {
      "id": "v-123", "session_id": "s-9", "channel": "web", "locale": "de-DE",
      "device": "mobile", "country": "DE", "referrer": "https://google.com/", "page": "/pricing",
      "utm": {"campaign": "sale"}, "traits": {"plan": "pro"},
      "segments": {"price_sensitive": 0.81, ...},
      "profile": {"visits": 3, "page_views": 12, "conversions": 1, "channels": ["ios", "web"],
                  "goals": {"signup": 1}, "exposures": {"hero": {"day": 1, "week": 2, "campaign": 5}}},
      "new_visitor": false, "returning_visitor": true,
      "continent": "EU", "city": "Berlin", "region": "BE",
      "page_path": "/pricing", "page_query": {"utm_campaign": "sale"},
      "history": {"pages": [{"path": "/pricing", "url": "…", "count": 3, "last": …,
                             "within": {"7d": 2}}, …],
                  "events": {"signup": {"count": 2, "last": …, "within": {"7d": 1}}},
                  "any_page": {"count": 9, "within": {…}}, "any_event": {"count": 2, "within": {…}}}
    }

Traits are also reachable at the top level (``plan``) unless they would shadow a built-in name, so
rules written for GrowthBook's flat attributes keep working. ``continent`` is derived from ``country``
(:data:`CONTINENTS`, GeoNames' assignment: AF, AN, AS, EU, NA, OC, SA); ``city`` and ``region`` are the
``city``/``region`` traits, which a front end fills from its CDN's geolocation; ``page_path`` and
``page_query`` are ``page`` split up (a bare path is its own ``page_path``). ``profile.exposures``
counts the person's exposures per experience for frequency caps
(:mod:`personalization.decision.frequency`). ``history`` is the visitor's bounded page and event
history (:mod:`personalization.decision.history`: parsed only when a condition reads it;
``within.<n><unit>`` counts over any window, relative to ``now``).

:func:`merge_values` is the same visitor as Ninetailed-style profile paths (``traits.firstname``,
``location.city``), for rich-text merge tags.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from msgspec.structs import replace

from personalization.decision.frequency import exposure_counts
from personalization.decision.history import history_attributes
from personalization.types import CONTINENTS, Profile, SegmentScores, Visitor

__all__ = [
    "normalise_visitor",
    "audience_attributes",
    "merge_values",
    "continent_of",
    "BUILTIN_ATTRIBUTES",
]

BUILTIN_ATTRIBUTES = frozenset(
    {
        "id", "session_id", "channel", "locale", "device", "country", "referrer", "page", "utm",
        "traits", "segments", "profile", "new_visitor", "returning_visitor",
        "continent", "city", "region", "page_path", "page_query", "history",
    }
)

def continent_of(country: str | None) -> str | None:
    """The continent code (``EU``, ``NA``, …) of an ISO country code, ``None`` when unknown."""
    return CONTINENTS.get(country.upper()) if country else None


@lru_cache(maxsize=2048)
def _page_parts(page: str) -> tuple[str, dict[str, str]]:
    """``page`` as (path, query parameters): a full URL is split, a bare path is its own path."""
    if page.startswith("/") and "?" not in page and "#" not in page:
        return page, {}
    parts = urlsplit(page)
    return parts.path or "/", dict(parse_qsl(parts.query, keep_blank_values=True))


def normalise_visitor(visitor: Visitor) -> Visitor:
    """Canonical forms: upper-case country, lower-case device, so rules need not guess the case."""
    country = visitor.country.upper() if visitor.country else None
    device = visitor.device.lower() if visitor.device else None
    if country == visitor.country and device == visitor.device:
        return visitor
    # Imported at module level: an import statement in here cost ~0.5 µs per request (issue 22).
    return replace(visitor, country=country, device=device)


def audience_attributes(
    visitor: Visitor, profile: Profile, segments: SegmentScores, now: float | None = None
) -> dict[str, Any]:
    """The document audience conditions are evaluated against (shape in the module docstring).

    ``now`` (Unix seconds, default the clock) is what history windows count back from.
    """
    clock = time.time() if now is None else now
    # Issue 22: measured ≈2.3 → ≈1.5 µs per call on the bench request's visitor. The traits are
    # copied whole when none shadows a built-in name (the usual case; no filtering comprehension),
    # and the built-in attributes are stored one by one: ``update`` with 18 keys on a dict that
    # already holds the traits measured ~0.6 µs slower (a temporary dict, then a merge with
    # resizes). Same keys in the same order (traits first), same values.
    traits = visitor.traits
    if BUILTIN_ATTRIBUTES.isdisjoint(traits):
        attributes: dict[str, Any] = dict(traits)
    else:
        attributes = {name: value for name, value in traits.items() if name not in BUILTIN_ATTRIBUTES}
    frequency = profile.frequency
    is_new = profile.is_new
    attributes["id"] = visitor.id
    attributes["session_id"] = visitor.session_id
    attributes["channel"] = visitor.channel
    attributes["locale"] = visitor.locale
    attributes["device"] = visitor.device
    attributes["country"] = country = visitor.country
    attributes["referrer"] = visitor.referrer
    attributes["page"] = page = visitor.page
    attributes["utm"] = visitor.utm
    attributes["traits"] = traits
    attributes["segments"] = segments
    attributes["profile"] = {
        "visits": profile.visits,
        "page_views": profile.page_views,
        "conversions": profile.conversions,
        "channels": list(profile.channels),
        "goals": profile.goals,
        # No comprehension to set up without counters (most visitors): ~0.1 µs (issue 22).
        "exposures": {key: exposure_counts(raw, clock) for key, raw in frequency.items()} if frequency else {},
    }
    attributes["new_visitor"] = is_new
    attributes["returning_visitor"] = not is_new
    attributes["continent"] = continent_of(country)
    attributes["city"] = traits.get("city")
    attributes["region"] = traits.get("region")
    attributes["history"] = history_attributes(profile.history, clock)
    if page:
        attributes["page_path"], attributes["page_query"] = _page_parts(page)
    return attributes


def _merge_text(value: object) -> str | None:
    """A trait value as a merge tag shows it: JavaScript's ``String()`` of a scalar, a list's items
    joined with ``", "``; ``None`` for null (the tag's fallback shows)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(text for text in map(_merge_text, value) if text is not None)
    return str(value)


def merge_values(visitor: Visitor) -> dict[str, str]:
    """The visitor as Ninetailed-style profile paths → text, for rich-text merge tags.

    ``traits.<name>`` for every trait with a value (a list's items joined with ``", "``; an object's
    keys as ``traits.<name>.<key>``), and ``location.countryCode``,
    ``location.continent``, ``location.city``, ``location.region`` where known (city and region are
    the ``city``/``region`` traits). Numbers read as JavaScript would print them (``3``, not ``3.0``).
    Empty without personalization consent: merge tags then show their fallbacks.
    """
    values: dict[str, str] = {}
    if not visitor.consent.personalization:
        return values
    for name, value in visitor.traits.items():
        if isinstance(value, dict):  # one level of nesting: ``traits.address.city``
            for key, inner in value.items():
                text = _merge_text(inner)
                if text is not None:
                    values[f"traits.{name}.{key}"] = text
            continue
        text = _merge_text(value)
        if text is not None:
            values[f"traits.{name}"] = text
    country = visitor.country.upper() if visitor.country else None
    location = {
        "countryCode": country,
        "continent": continent_of(country),
        "city": visitor.traits.get("city"),
        "region": visitor.traits.get("region"),
    }
    for name, value in location.items():
        if value is not None and value != "":
            values[f"location.{name}"] = str(value)
    return values
