"""Vary's own data, in the order a request meets it.

Every value here is a frozen msgspec Struct: cheap to build, hashable where it matters, and encoded to
JSON without a schema layer in between. ``personalization`` sees only these types — never HTTP, never
Contentful's wire format — so the content compiler (``content/``) translates Contentful entries into
:class:`Experience` and :class:`Audience`, and the API translates requests into :class:`Visitor`.

Stored records (:class:`Exposure`, :class:`Profile`) evolve only by adding fields with defaults, so old
stream entries keep decoding (msgspec ``docs/schema-evolution.rst``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

__all__ = [
    "CHANNELS",
    "Channel",
    "Consent",
    "Visitor",
    "Profile",
    "SegmentScores",
    "Audience",
    "Experience",
    "ExperienceType",
    "Decision",
    "Exposure",
]

Channel = Literal["web", "ios", "android", "email", "kiosk", "call_center", "store"]
CHANNELS: tuple[str, ...] = ("web", "ios", "android", "email", "kiosk", "call_center", "store")

ExperienceType = Literal["personalization", "ab_test", "bandit"]

#: Short identifiers (visitor ids, session ids, keys): bounded so a client cannot make Vary store megabytes.
Id = Annotated[str, Meta(min_length=1, max_length=256)]
ShortText = Annotated[str, Meta(max_length=256)]
Url = Annotated[str, Meta(max_length=2048)]
#: A trait: a short string (≤ 1,024 characters), a number, a flag or null.
TraitValue = Annotated[str, Meta(max_length=1024)] | float | bool | None


class Consent(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the visitor agreed to. Defaults follow the peers: both on unless the front end says no."""

    personalization: bool = True
    analytics: bool = True


class Visitor(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The request-time context of one visitor: who, where, on which channel. Only ``id`` is required."""

    id: Id
    session_id: Id | None = None
    channel: Channel = "web"
    locale: Annotated[str, Meta(max_length=35)] | None = None
    device: Annotated[str, Meta(max_length=64)] | None = None
    country: Annotated[str, Meta(max_length=2, pattern="^[A-Za-z]{2}$")] | None = None
    referrer: Url | None = None
    page: Url | None = None
    utm: Annotated[dict[Annotated[str, Meta(max_length=64)], ShortText], Meta(max_length=16)] = {}
    traits: Annotated[
        dict[Annotated[str, Meta(max_length=128)], TraitValue], Meta(max_length=64)
    ] = {}
    consent: Consent = Consent()


class Profile(Struct, frozen=True, kw_only=True):
    """Behaviour counters kept per visitor in Redis, updated by events, read once per decision.

    ``assignments`` holds sticky variant assignments by experience key: once a visitor has seen a
    variant, a later change of weights does not move them (GrowthBook's sticky bucketing).
    """

    visits: int = 0
    page_views: int = 0
    conversions: int = 0
    first_seen: float | None = None
    last_seen: float | None = None
    channels: tuple[str, ...] = ()
    goals: dict[str, int] = {}
    assignments: dict[str, int] = {}

    @property
    def is_new(self) -> bool:
        """A visitor with no recorded visit before this request."""
        return self.visits == 0


#: P(segment) for each segment the active model knows, e.g. ``{"price_sensitive": 0.81}``.
SegmentScores = dict[str, float]


class Audience(Struct, frozen=True, kw_only=True):
    """Who an experience is for: a GrowthBook-syntax condition over the visitor's attributes.

    Marketers may fill simple fields in Contentful (segment + min score, countries, …); the content
    compiler turns those into the same ``condition`` so one evaluator serves both.
    """

    id: str
    key: str
    name: str
    condition: dict[str, object] = {}


class Experience(Struct, frozen=True, kw_only=True):
    """One experience as Vary runs it.

    ``variants`` are the entry ids of variants 1..k; variant 0 (control) is always the baseline entry
    the experience is attached to, so one experience can serve several baselines. ``weights`` has k+1
    numbers summing to 1 (index 0 = control). ``traffic_allocation`` is GrowthBook's coverage: the share
    of the audience that enters at all. ``holdout`` is the share of entrants kept on control and
    flagged, measured against everyone else.
    """

    id: str
    key: Id
    name: str
    type: ExperienceType
    variants: tuple[str, ...]
    weights: tuple[float, ...]
    audience: Audience | None = None
    traffic_allocation: float = 1.0
    holdout: float = 0.0
    goals: tuple[str, ...] = ()
    starts_at: float | None = None
    ends_at: float | None = None
    content_type: str | None = None
    #: ``bandit`` only: how the learned policy explores, and the least probability any variant keeps.
    bandit_method: Literal["thompson", "epsilon_greedy"] = "thompson"
    epsilon: float = 0.1
    min_probability: float = 0.05

    def is_running(self, now: float) -> bool:
        """Inside its schedule (an open end on either side means no limit)."""
        if self.starts_at is not None and now < self.starts_at:
            return False
        return self.ends_at is None or now < self.ends_at


class Decision(Struct, frozen=True, kw_only=True):
    """What Vary chose for one requested entry, and why.

    ``propensity`` is the probability the logging policy had of serving this variant to a visitor who
    entered the experience: control = holdout + (1 − holdout)·w₀, variant i = (1 − holdout)·wᵢ. It is
    what off-policy evaluation needs. With no experience it is 1.0 (the baseline is certain).
    """

    entry_id: str
    experience: str | None
    variant: int
    variant_entry_id: str
    is_control: bool
    holdout: bool
    propensity: float
    reason: str
    exposure_id: str


class Exposure(Struct, frozen=True, kw_only=True):
    """One entry served to one visitor: the record every measurement is built from.

    Written to the ``vary:exposures`` stream. ``visitor_id`` is ``None`` when the visitor did not consent
    to analytics: the exposure still counts in aggregates, but is not tied to a person.
    """

    id: str
    ts: float
    visitor_id: str | None
    session_id: str | None
    channel: str
    entry_id: str
    variant_entry_id: str
    experience: str | None
    variant: int
    is_control: bool
    holdout: bool
    propensity: float
    model_version: str | None = None
    segments: SegmentScores = {}
    country: str | None = None
    device: str | None = None


EXPOSURE_ENCODER = msgspec.json.Encoder()
EXPOSURE_DECODER = msgspec.json.Decoder(Exposure)
