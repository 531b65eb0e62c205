"""Where a simulated visit comes from: referrer URL and UTM tags, drawn from a :class:`TrafficMix`.

The demo training data and ``vary simulate`` draw arrivals the same way and differ only in their
shares (the simulator sends more sale traffic so the planted effect has price-sensitive visitors to
act on), so one function takes the shares as data. It consumes the random stream identically for a
given mix, which keeps the seeded demo data and simulations reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import msgspec

__all__ = ["TrafficMix", "COUPON_SITES", "pick", "traffic"]

COUPON_SITES = ("retailmenot.com", "slickdeals.net", "honey.com")

Shares = Mapping[str, float]


class TrafficMix(msgspec.Struct, frozen=True, kw_only=True):
    """The shares one population of visitors arrives with."""

    email_campaigns: dict[str, float]
    web_sources: dict[str, float]
    app_sources: dict[str, float]
    paid_search_campaigns: dict[str, float]
    social_campaigns: dict[str, float]
    search_query: str = "shoes"


def pick(rng: random.Random, options: Shares) -> str:
    """One key of ``options``, drawn with the values as weights (one ``random()`` call)."""
    return rng.choices(tuple(options), weights=tuple(options.values()))[0]


def traffic(rng: random.Random, channel: str, mix: TrafficMix) -> tuple[str | None, dict[str, str]]:
    """Where this visit came from: a referrer URL (or none) and its UTM tags."""
    if channel == "email":
        campaign = pick(rng, mix.email_campaigns)
        return None, {"source": "newsletter", "medium": "email", "campaign": campaign}
    # web traffic comes from everywhere; the apps are mostly opened directly, some from ads and push
    kind = pick(rng, mix.web_sources if channel == "web" else mix.app_sources)
    if kind == "direct":
        return None, {}
    if kind == "organic":
        site = pick(rng, {"google.com": 0.8, "bing.com": 0.12, "duckduckgo.com": 0.08})
        return f"https://www.{site}/search?q={mix.search_query}", {}
    if kind == "paid_search":
        campaign = pick(rng, mix.paid_search_campaigns)
        return "https://www.google.com/", {"source": "google", "medium": "cpc", "campaign": campaign}
    if kind == "social":
        site = pick(rng, {"facebook.com": 0.55, "instagram.com": 0.35, "t.co": 0.10})
        if rng.random() < 0.6:
            campaign = pick(rng, mix.social_campaigns)
            source = "twitter" if site == "t.co" else site.removesuffix(".com")
            return f"https://{site}/", {"source": source, "medium": "social", "campaign": campaign}
        return f"https://{site}/", {}
    if kind == "coupon":
        site = rng.choice(COUPON_SITES)
        if rng.random() < 0.5:
            campaign = pick(rng, {"coupon": 0.6, "sale": 0.4})
            return f"https://www.{site}/deals", {"source": site.split(".")[0], "medium": "affiliate",
                                                  "campaign": campaign}
        return f"https://www.{site}/deals", {}
    if kind == "display":
        return None, {"source": "criteo", "medium": "display", "campaign": "retargeting"}
    campaign = pick(rng, {"sale": 0.5, "brand": 0.2, "loyalty": 0.3})
    return None, {"source": "push", "medium": "push", "campaign": campaign}
