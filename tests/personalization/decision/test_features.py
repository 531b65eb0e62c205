from __future__ import annotations

import math

from personalization.decision.features import FEATURE_NAMES, build_features
from personalization.types import Profile, Visitor


def test_features_from_context_profile_and_traits() -> None:
    visitor = Visitor(
        id="v", channel="ios", device="Mobile", country="de", referrer="https://www.google.com/search?q=x",
        utm={"campaign": "Sale", "source": "newsletter"}, traits={"plan": "pro", "age": 31, "vip": True},
    )
    profile = Profile(visits=3, page_views=9, conversions=1, first_seen=0.0, channels=("ios", "web"))
    row = build_features(visitor, profile, now=2 * 86_400.0, traits_as_features=True)
    assert row["channel"] == "ios" and row["device"] == "mobile" and row["country"] == "DE"
    assert row["referrer_domain"] == "google.com" and row["utm_campaign"] == "sale"
    assert row["log_page_views"] == math.log1p(9) and row["days_since_first_seen"] == 2.0
    assert row["is_new"] == 0.0 and row["channels_used"] == 2.0
    assert row["trait_plan"] == "pro" and row["trait_age"] == 31.0 and row["trait_vip"] == 1.0
    assert {k for k in row if not k.startswith("trait_")} <= set(FEATURE_NAMES)


def test_minimal_visitor_gives_a_valid_row() -> None:
    row = build_features(Visitor(id="v"), Profile(), now=0.0)
    assert row["channel"] == "web" and row["is_new"] == 1.0 and "country" not in row
