"""The audience attribute document: its keys, their order and values (issue 22 rebuilt how it is made)."""

from __future__ import annotations

from personalization.decision.context import audience_attributes, normalise_visitor
from personalization.types import Profile, Visitor


def test_attributes_keep_their_shape_and_order() -> None:
    visitor = normalise_visitor(
        Visitor(
            id="v1", session_id="s1", channel="web", device="Mobile", country="us", page="/p?utm_campaign=sale",
            traits={"plan": "pro", "country": "FR", "city": "Berlin"}, utm={"source": "news"},
        )
    )
    profile = Profile(visits=2, channels=("web",), frequency={"hero": "1 2 3 4 5"})
    attributes = audience_attributes(visitor, profile, {"loyal": 0.5}, now=86_400.0)
    assert list(attributes) == [
        "plan", "id", "session_id", "channel", "locale", "device", "country", "referrer", "page", "utm",
        "traits", "segments", "profile", "new_visitor", "returning_visitor", "continent", "city", "region", "history",
        "page_path", "page_query",
    ]
    assert attributes["country"] == "US" and attributes["device"] == "mobile" and attributes["continent"] == "NA"
    assert attributes["city"] == "Berlin" and attributes["region"] is None and attributes["plan"] == "pro"
    assert attributes["profile"] == {
        "visits": 2, "page_views": 0, "conversions": 0, "channels": ["web"], "goals": {},
        "exposures": {"hero": {"day": 2, "week": 0, "campaign": 5}},
    }
    assert attributes["new_visitor"] is False and attributes["returning_visitor"] is True
    assert attributes["page_path"] == "/p" and attributes["page_query"] == {"utm_campaign": "sale"}
    assert audience_attributes(visitor, Profile(), {}, now=0.0)["profile"]["exposures"] == {}
