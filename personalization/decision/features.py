"""Visitor context + profile + traits → one feature mapping, shared by training and serving.

Training rows and live requests go through :func:`build_features` alike, so the model cannot see a
feature at serving time that it was trained on differently. Categorical values stay strings (the
model's ``DictVectorizer`` one-hot encodes them as ``name=value`` and ignores values it never saw);
counts stay numbers. Nothing here reads a clock: ``now`` is an argument, so a feature row is a pure
function of its inputs and can be rebuilt from logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from math import log1p
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
#: The UTM parameters :func:`build_features` reads, with their feature names (``utm_<key>``).
_UTM_FEATURES: tuple[tuple[str, str], ...] = tuple((key, f"utm_{key}") for key in ("source", "medium", "campaign"))


@lru_cache(maxsize=2048)
def _host(url: str) -> str | None:
    """The host of a non-empty referrer without ``www.``; ``None`` for a relative referrer. Cached, as
    referrers repeat across visitors and parsing one with ``urlsplit`` cost ~0.5 µs per request
    (issue 22)."""
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
    # Issue 22: each field read once, the referrer cache called directly, the UTM feature names
    # precomputed (no f-string per key) and the UTM loop skipped without UTM parameters: ≈1.0 →
    # ≈0.87 µs per call on the bench request's visitor. Same row, same key order.
    row: FeatureRow = {"channel": visitor.channel}
    device = visitor.device
    if device:
        row["device"] = device.lower()
    country = visitor.country
    if country:
        row["country"] = country.upper()
    referrer = visitor.referrer
    if referrer:
        domain = _host(referrer)
        if domain:
            row["referrer_domain"] = domain
    utm = visitor.utm
    if utm:
        for key, feature in _UTM_FEATURES:
            value = utm.get(key)
            if value:
                row[feature] = value.lower()
    row["visits"] = float(profile.visits)
    row["log_page_views"] = log1p(profile.page_views)
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
