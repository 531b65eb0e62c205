"""Visitor context + profile + traits → one feature mapping, shared by training and serving.

Training rows and live requests go through :func:`build_features` alike, so the model cannot see a
feature at serving time that it was trained on differently. Categorical values stay strings (the
model's ``DictVectorizer`` one-hot encodes them as ``name=value`` and ignores values it never saw);
counts stay numbers. Nothing here reads a clock: ``now`` is an argument, so a feature row is a pure
function of its inputs and can be rebuilt from logs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import urlsplit

from personalization.seams import FeatureExtractor
from personalization.types import Profile, Visitor

__all__ = ["FeatureRow", "build_features", "policy_context", "FEATURE_NAMES"]

FeatureRow = dict[str, float | str]

#: The base feature names :func:`build_features` may emit (categoricals expand to ``name=value``).
FEATURE_NAMES: tuple[str, ...] = (
    "channel",
    "device",
    "country",
    "referrer_domain",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "visits",
    "log_page_views",
    "conversions",
    "channels_used",
    "is_new",
    "days_since_first_seen",
)

_DAY = 86_400.0


def _domain(url: str | None) -> str | None:
    """The host of a referrer without ``www.``; ``None`` for an empty or relative referrer."""
    if not url:
        return None
    return _host(url)


@lru_cache(maxsize=2048)
def _host(url: str) -> str | None:
    """``_domain`` of a non-empty referrer: cached, as referrers repeat across visitors and parsing
    one with ``urlsplit`` cost ~0.5 µs per request (issue 22)."""
    host = urlsplit(url if "//" in url else f"//{url}").hostname
    if not host:
        return None
    return host.removeprefix("www.")


def build_features(
    visitor: Visitor,
    profile: Profile,
    now: float,
    traits_as_features: bool = False,
    extractors: Sequence[FeatureExtractor] = (),
) -> FeatureRow:
    """Features for one visitor at time ``now`` (Unix seconds).

    Missing context is simply absent from the mapping (the vectorizer reads absence as 0), so a
    visitor with nothing but an id still gets a valid row. ``traits_as_features`` adds the visitor's
    scalar traits as ``trait_<name>`` features, for models trained on them. ``extractors`` are the
    plugins' (``Registry.extractors``): training and serving pass the same ones.
    """
    row: FeatureRow = {"channel": visitor.channel}
    if visitor.device:
        row["device"] = visitor.device.lower()
    if visitor.country:
        row["country"] = visitor.country.upper()
    domain = _domain(visitor.referrer)
    if domain:
        row["referrer_domain"] = domain
    for key in ("source", "medium", "campaign"):
        value = visitor.utm.get(key)
        if value:
            row[f"utm_{key}"] = value.lower()
    row["visits"] = float(profile.visits)
    row["log_page_views"] = math.log1p(profile.page_views)
    row["conversions"] = float(profile.conversions)
    row["channels_used"] = float(len(profile.channels))
    row["is_new"] = 1.0 if profile.is_new else 0.0
    if profile.first_seen is not None:
        row["days_since_first_seen"] = max(0.0, (now - profile.first_seen) / _DAY)
    if traits_as_features:
        for name, value in visitor.traits.items():
            if isinstance(value, bool):
                row[f"trait_{name}"] = 1.0 if value else 0.0
            elif isinstance(value, (int, float)):
                row[f"trait_{name}"] = float(value)
            elif isinstance(value, str):
                row[f"trait_{name}"] = value
    if extractors:  # plugins' features (personalization/plugins.py); none: no cost
        for extractor in extractors:
            for name, value in extractor(visitor, profile, now).items():
                row.setdefault(name, value)  # a built-in feature keeps its meaning
    return row


def policy_context(
    channel: str, country: str | None, device: str | None, segments: dict[str, float]
) -> FeatureRow:
    """The context a bandit's reward model sees: what every exposure records, so a policy trained from
    the exposure log sees exactly the features it is served with (channel, country, device and the
    visitor's segment scores at decision time)."""
    row: FeatureRow = {"channel": channel}
    if country:
        row["country"] = country
    if device:
        row["device"] = device
    for name, score in segments.items():
        row[f"segment_{name}"] = score
    return row
