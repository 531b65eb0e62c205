"""Synthetic visitors: who arrives, on which channel and device, from where — one generator for the
demo training data (:mod:`personalization.demo.data`) and ``vary simulate``
(:mod:`personalization.demo.simulation`).

Both populations arrive the same way and differ only in their shares (the simulator sends more sale
traffic so the planted effect has price-sensitive visitors to act on), so the shares are data — a
:class:`TrafficMix` and :class:`VisitorMix` — and :func:`draw_arrival` is the one function that draws
a visitor's context. It consumes the random stream identically for a given mix (channel, device,
a missing device, country, then referrer and UTM tags), which keeps the seeded demo data and
simulations reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

__all__ = [
    "CHANNELS",
    "COUNTRIES",
    "COUPON_SITES",
    "TrafficMix",
    "VisitorMix",
    "Arrival",
    "pick",
    "traffic",
    "draw_arrival",
]

COUPON_SITES = ("retailmenot.com", "slickdeals.net", "honey.com")
#: Shares of the channels visitors arrive on.
CHANNELS: dict[str, float] = {"web": 0.55, "ios": 0.18, "android": 0.17, "email": 0.10}
#: Shares of the visitors' countries; ``""`` is an unknown country.
COUNTRIES: dict[str, float] = {"US": 0.40, "CA": 0.10, "DE": 0.12, "GB": 0.15, "FR": 0.10, "JP": 0.08, "": 0.05}
#: Devices by channel (the apps run on phones and tablets).
_WEB_DEVICES = {"desktop": 0.5, "mobile": 0.42, "tablet": 0.08}
_EMAIL_DEVICES = {"desktop": 0.45, "mobile": 0.55}
_APP_DEVICES = {"mobile": 0.88, "tablet": 0.12}

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


class VisitorMix(msgspec.Struct, frozen=True, kw_only=True):
    """One population: how it arrives, and the share whose device is not known."""

    traffic: TrafficMix
    no_device_share: float


@dataclass(frozen=True, slots=True)
class Arrival:
    """A synthetic visitor's context: what a front end would tell Vary about the visit."""

    channel: str
    device: str | None
    country: str | None
    referrer: str | None
    utm: dict[str, str]


def draw_arrival(rng: random.Random, mix: VisitorMix) -> Arrival:
    """One visitor's channel, device, country, referrer and UTM tags, drawn from ``rng``."""
    channel = pick(rng, CHANNELS)
    if channel == "web":
        device: str | None = pick(rng, _WEB_DEVICES)
    elif channel == "email":
        device = pick(rng, _EMAIL_DEVICES)
    else:
        device = pick(rng, _APP_DEVICES)
    if rng.random() < mix.no_device_share:
        device = None
    country = pick(rng, COUNTRIES) or None
    referrer, utm = traffic(rng, channel, mix.traffic)
    return Arrival(channel=channel, device=device, country=country, referrer=referrer, utm=utm)
