"""Visitor context: normalise what the front end sent and build the attributes audiences see.

Audience conditions (GrowthBook syntax) read a flat-ish attribute document. Its shape is part of
Vary's public contract, because marketers write rules against it::

    {
      "id": "v-123", "session_id": "s-9", "channel": "web", "locale": "de-DE",
      "device": "mobile", "country": "DE", "referrer": "https://google.com/", "page": "/pricing",
      "utm": {"campaign": "sale"}, "traits": {"plan": "pro"},
      "segments": {"price_sensitive": 0.81, ...},
      "profile": {"visits": 3, "page_views": 12, "conversions": 1, "channels": ["ios", "web"],
                  "goals": {"signup": 1}},
      "new_visitor": false, "returning_visitor": true
    }

Traits are also reachable at the top level (``plan``) unless they would shadow a built-in name, so
rules written for GrowthBook's flat attributes keep working.
"""

from __future__ import annotations

from typing import Any

from personalization.types import Profile, SegmentScores, Visitor

__all__ = ["normalise_visitor", "audience_attributes", "BUILTIN_ATTRIBUTES"]

BUILTIN_ATTRIBUTES = frozenset(
    {
        "id", "session_id", "channel", "locale", "device", "country", "referrer", "page", "utm",
        "traits", "segments", "profile", "new_visitor", "returning_visitor",
    }
)


def normalise_visitor(visitor: Visitor) -> Visitor:
    """Canonical forms: upper-case country, lower-case device, so rules need not guess the case."""
    country = visitor.country.upper() if visitor.country else None
    device = visitor.device.lower() if visitor.device else None
    if country == visitor.country and device == visitor.device:
        return visitor
    from msgspec.structs import replace

    return replace(visitor, country=country, device=device)


def audience_attributes(
    visitor: Visitor, profile: Profile, segments: SegmentScores
) -> dict[str, Any]:
    """The document audience conditions are evaluated against (shape in the module docstring)."""
    attributes: dict[str, Any] = {
        name: value for name, value in visitor.traits.items() if name not in BUILTIN_ATTRIBUTES
    }
    attributes.update(
        id=visitor.id,
        session_id=visitor.session_id,
        channel=visitor.channel,
        locale=visitor.locale,
        device=visitor.device,
        country=visitor.country,
        referrer=visitor.referrer,
        page=visitor.page,
        utm=visitor.utm,
        traits=visitor.traits,
        segments=segments,
        profile={
            "visits": profile.visits,
            "page_views": profile.page_views,
            "conversions": profile.conversions,
            "channels": list(profile.channels),
            "goals": profile.goals,
        },
        new_visitor=profile.is_new,
        returning_visitor=not profile.is_new,
    )
    return attributes
