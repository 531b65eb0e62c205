"""Vary's own data, in the order a request meets it.

Every value here is a frozen msgspec Struct: cheap to build, hashable where it matters, and encoded to
JSON without a schema layer in between. ``personalization`` sees only these types — never HTTP, never
Contentful's wire format — so the content compiler (``content/``) translates Contentful entries into
:class:`Experience` and :class:`Audience`, and the API translates requests into :class:`Visitor`.

Stored records (:class:`Exposure`, :class:`Profile`) evolve only by adding fields with defaults, so old
stream entries keep decoding (msgspec ``docs/schema-evolution.rst``).
"""

from __future__ import annotations

import itertools
import os
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

# Survey definitions live in their own module (issue 24); they are re-exported here because ``content``
# may import only this module, ``seams`` and ``errors`` of ``personalization`` (tests/test_imports.py).
from personalization.survey_types import (
    SURVEY_METRICS,
    SURVEY_TRIGGERS,
    SurveyDefinition,
    SurveyMetric,
    SurveyText,
    SurveyTrigger,
    SurveyTriggerKind,
)

__all__ = [
    "RESERVED_GOAL_PREFIX",
    "goal_name_problem",
    "CHANNELS",
    "Channel",
    "Consent",
    "Visitor",
    "Profile",
    "SegmentScores",
    "Audience",
    "Experience",
    "Guardrail",
    "FrequencyCap",
    "phase_key",
    "ExperienceType",
    "Assignment",
    "ServedVariant",
    "Decision",
    "Exposure",
    "new_exposure_id",
    "CONTINENTS",
    "EVENT_TYPES",
    "Journey",
    "JourneyStage",
    "SURVEY_METRICS",
    "SURVEY_TRIGGERS",
    "SurveyDefinition",
    "SurveyMetric",
    "SurveyText",
    "SurveyTrigger",
    "SurveyTriggerKind",
]

Channel = Literal["web", "ios", "android", "email", "kiosk", "call_center", "store"]
CHANNELS: tuple[str, ...] = ("web", "ios", "android", "email", "kiosk", "call_center", "store")

ExperienceType = Literal["personalization", "ab_test", "bandit"]

#: Short identifiers (visitor ids, session ids, keys): bounded so a client cannot make Vary store megabytes.
Id = Annotated[str, Meta(min_length=1, max_length=256)]
ShortText = Annotated[str, Meta(max_length=256)]
Url = Annotated[str, Meta(max_length=2048)]
#: A scalar trait: a short string (≤ 1,024 characters), a number, a flag or null.
TraitScalar = Annotated[str, Meta(max_length=1024)] | float | bool | None
#: A list of scalars, as CDPs send them (``"purchased_product_features": ["Process Management", …]``).
TraitList = Annotated[list[TraitScalar], Meta(max_length=100)]
#: A trait as Segment, RudderStack and Contentful Personalization send it: a scalar, a list of
#: scalars, or one level of nested object (``{"city": "Berlin", "tags": ["a"]}``; no object in it).
#: Conditions read lists with GrowthBook's array semantics (``$elemMatch``, ``$all``, ``$size``,
#: ``$in``) and objects by dot path (``traits.address.city``).
TraitValue = (
    TraitScalar
    | TraitList
    | Annotated[dict[Annotated[str, Meta(max_length=128)], TraitScalar | TraitList], Meta(max_length=32)]
)


class Consent(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the visitor agreed to. Defaults follow the peers: both on unless the front end says no."""

    personalization: Annotated[
        bool, Meta(description="May Vary personalize for this visitor? `false`: the baseline is served.")
    ] = True
    analytics: Annotated[
        bool,
        Meta(
            description="May Vary store this visitor's exposures and events? `false`: counted anonymously, never tied to them."
        ),
    ] = True


class Visitor(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The request-time context of one visitor: who, where, on which channel. Only ``id`` is required."""

    id: Annotated[Id, Meta(description="A stable, opaque visitor id chosen by the front end (a cookie, a device id).")]
    session_id: Annotated[Id, Meta(description="The current session's id, if the front end keeps one.")] | None = None
    channel: Annotated[
        Channel,
        Meta(description="Where the visitor is: `web`, `ios`, `android`, `email`, `kiosk`, `call_center` or `store`."),
    ] = "web"
    locale: (
        Annotated[
            str,
            Meta(
                max_length=35,
                description="The visitor's preferred locale (BCP 47), for audiences; the answer's locale is the request's `locale`.",
            ),
        ]
        | None
    ) = None
    device: (
        Annotated[str, Meta(max_length=64, description="Device class, e.g. `mobile`, `desktop`, `tablet`.")] | None
    ) = None
    country: (
        Annotated[
            str, Meta(max_length=2, pattern="^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2 country code, e.g. `CA`.")
        ]
        | None
    ) = None
    referrer: Annotated[Url, Meta(description="The referring URL.")] | None = None
    page: Annotated[Url, Meta(description="The current page URL.")] | None = None
    utm: Annotated[
        dict[Annotated[str, Meta(max_length=64)], ShortText],
        Meta(max_length=16, description="UTM parameters of the visit (`source`, `medium`, `campaign`, …)."),
    ] = {}
    traits: Annotated[
        dict[Annotated[str, Meta(max_length=128)], TraitValue],
        Meta(
            max_length=64,
            description="Attributes the front end knows (plan, loyalty tier…) for audiences; remembered with the profile.",
        ),
    ] = {}
    consent: Annotated[Consent, Meta(description="What the visitor agreed to.")] = Consent()


class Profile(Struct, frozen=True, kw_only=True):
    """Behaviour counters kept per visitor in Redis, updated by events, read once per decision.

    ``assignments`` holds sticky variant assignments by experience key: once a visitor has seen a
    variant, a later change of weights does not move them (GrowthBook's sticky bucketing).
    """

    visits: Annotated[int, Meta(description="Visits (sessions) recorded for the visitor.")] = 0
    page_views: Annotated[int, Meta(description="`page_view` events recorded.")] = 0
    conversions: Annotated[int, Meta(description="Conversions recorded, over every goal.")] = 0
    first_seen: (
        Annotated[float, Meta(description="When the visitor was first seen, Unix seconds; null for a new visitor.")]
        | None
    ) = None
    last_seen: (
        Annotated[float, Meta(description="When the visitor was last seen, Unix seconds; null for a new visitor.")]
        | None
    ) = None
    channels: Annotated[tuple[str, ...], Meta(description="The channels the visitor has been seen on.")] = ()
    goals: Annotated[dict[str, int], Meta(description="Goal → conversions recorded on it.")] = {}
    assignments: Annotated[
        dict[str, int],
        Meta(description="Experience key → the sticky variant assigned (a later change of weights does not move it)."),
    ] = {}
    history: Annotated[
        dict[str, str],
        Meta(
            description="The bounded page and event history (raw hash fields, parsed lazily by `history`; layout in `visitor_history`)."
        ),
    ] = {}
    traits: Annotated[
        dict[str, TraitValue],
        Meta(
            description="Traits remembered from `identify` events and personalize requests (`traits`); a request's own traits override them for that call."
        ),
    ] = {}
    frequency: Annotated[
        dict[str, str],
        Meta(
            description='Exposure counters by experience key, raw (`"<day> <n> <week> <n> <n all>"`), for frequency caps (`frequency`); written by the exposure writer.'
        ),
    ] = {}

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


class Guardrail(Struct, frozen=True, kw_only=True):
    """A metric an experience must not harm, and which direction is harm.

    ``metric``: ``task_success``, ``abandonment``, ``csat``, ``ces``, ``nps``, or ``goal:<name>`` (that
    goal's conversion rate). ``harm``: the direction that is harm (``decrease`` for task success, CSAT,
    NPS and goal rates; ``increase`` for abandonment and CES, whose lower values are better).
    """

    metric: str
    harm: Literal["decrease", "increase"]


class FrequencyCap(Struct, frozen=True, kw_only=True):
    """How often one person may be served an experience's variant before the baseline is served
    instead: at most ``max_exposures`` per UTC ``day``, ISO ``week``, or over the whole ``campaign``,
    counted over every channel."""

    max_exposures: Annotated[int, Meta(ge=1, description="Most exposures per person per `period`.")]
    period: Annotated[
        Literal["day", "week", "campaign"],
        Meta(description="`day` (UTC), `week` (ISO) or `campaign` (the whole experience)."),
    ]


def phase_key(experience: str, phase: int) -> str:
    """The name an experience's aggregates have in a phase: the key itself in phase 1 (all data
    recorded before phases existed is phase 1), ``<key>@p<n>`` from phase 2 on."""
    return experience if phase <= 1 else f"{experience}@p{phase}"


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
    #: How visitors are bucketed: ``growthbook`` (Vary's own, GrowthBook-compatible hashing) or
    #: ``ninetailed`` (experiences from a Contentful Personalization space: the same variant its SDK picks).
    bucketing: Literal["growthbook", "ninetailed"] = "growthbook"
    #: Mutually exclusive layer (GrowthBook's namespace): experiences sharing ``layer`` split its
    #: traffic, each owning ``layer_range`` = [start, end) of it, so one visitor is in at most one.
    layer: str | None = None
    layer_range: tuple[float, float] | None = None
    #: At most this many exposures per person and period; past it the baseline is served.
    frequency_cap: FrequencyCap | None = None
    #: Metrics whose harm pauses a variant (:mod:`personalization.measurement.guardrails`).
    guardrails: tuple[Guardrail, ...] = ()
    #: When its assignment-relevant set-up (experience entry or audience) was last edited in the CMS
    #: (epoch s); phases start at such edits. ``None``: unknown (not from a CMS).
    updated_at: float | None = None
    #: Live state the runtime lays over the compiled experience (never from content): the current
    #: phase (new on every edit that changes assignment) and the paused variants with the reason.
    phase: int = 1
    paused: dict[int, str] = {}

    def is_running(self, now: float) -> bool:
        """Inside its schedule (an open end on either side means no limit)."""
        if self.starts_at is not None and now < self.starts_at:
            return False
        return self.ends_at is None or now < self.ends_at


class Assignment(Struct, frozen=True, kw_only=True):
    """The outcome of selection for one entry (before it becomes a :class:`Decision`).

    What :func:`personalization.decision.selection.select_experience` and a plugin's
    ``ExperiencePolicy.assign`` return: the experience entered (``None``: baseline, nothing logged
    against an experience), the variant, whether the visitor is held out, and the propensity.
    """

    experience: Experience | None
    variant: int
    holdout: bool
    propensity: float
    reason: str


class ServedVariant(Struct, frozen=True, kw_only=True):
    """Which variant of a requested entry was served, under which experience, with what probability.

    Declared once and shared: a :class:`Decision` (what to serve), its :class:`Exposure` (what is
    logged) and the API's answer entry (``api.http.schemas.PersonalizedEntry``) all carry these.
    ``propensity`` is the probability the logging policy had of serving this variant to a visitor who
    entered the experience: control = holdout + (1 − holdout)·w₀, variant i = (1 − holdout)·wᵢ. It is
    what off-policy evaluation needs. With no experience it is 1.0 (the baseline is certain).
    ``variant_entry_id`` is the entry served (the baseline itself for variant 0).
    """

    entry_id: Annotated[str, Meta(description="The requested (baseline) entry.")]
    experience: (
        Annotated[
            str,
            Meta(
                description="The experience that decided this entry; null when none applies (the baseline is served)."
            ),
        ]
        | None
    )
    variant: Annotated[int, Meta(description="The variant served: 0 is control (the baseline).")]
    variant_entry_id: Annotated[str, Meta(description="The entry actually served (the baseline itself for variant 0).")]
    is_control: Annotated[bool, Meta(description="True when the baseline was served as the experience's control.")]
    holdout: Annotated[
        bool,
        Meta(
            description="True when the visitor is in the experience's holdout (served the baseline, never personalized)."
        ),
    ]
    propensity: Annotated[
        float,
        Meta(
            description="Probability the policy had of serving this variant (for off-policy evaluation); 1.0 without an experience."
        ),
    ]


class Decision(ServedVariant, frozen=True, kw_only=True):
    """What Vary chose for one requested entry, and why (``reason``, readable by a marketer)."""

    reason: Annotated[str, Meta(description="Why this variant, in words a marketer can read.")]
    exposure_id: Annotated[
        str, Meta(description="Id of the exposure logged for this decision (or to be logged, with `on_view`).")
    ]


class Exposure(ServedVariant, frozen=True, kw_only=True, omit_defaults=True):
    """One entry served to one visitor: the record every measurement is built from.

    Written to the ``vary:exposures`` stream. ``visitor_id`` is ``None`` when the visitor did not consent
    to analytics: the exposure still counts in aggregates, but is not tied to a person. Decoding is by
    field name, so entries written before the shared fields moved to :class:`ServedVariant` (whose
    keys came in another order) decode as they did.

    Record format 2 (:mod:`personalization.store.formats`): fields equal to their default (``null``,
    ``phase`` 1, no segments) are left out of the JSON (``omit_defaults``; ~130 bytes less per stored
    exposure), which every reader — this one and format 1's, which had the same defaults — decodes
    to the same value. Format 1 wrote every field. Unknown fields are ignored, so a newer writer's
    additions never stop an older reader. Never add ``forbid_unknown_fields`` here.
    """

    id: str
    ts: float
    visitor_id: str | None
    session_id: str | None
    channel: str
    model_version: str | None = None
    segments: SegmentScores = {}
    country: str | None = None
    device: str | None = None
    #: The experience's phase when this was served (:func:`phase_key`); 1 for everything older.
    phase: int = 1
    #: Shadow mode (docs/models.md): the candidate policy running beside the live one of this bandit
    #: experience, the variant it would have chosen for this decision and its probability of that
    #: variant. ``None`` when no shadow ran (every exposure before #21, and every non-bandit one).
    shadow_version: str | None = None
    shadow_variant: int | None = None
    shadow_propensity: float | None = None


_EXPOSURE_ID_PREFIX = os.urandom(6).hex()
_EXPOSURE_ID_COUNTER = itertools.count(1)


def new_exposure_id() -> str:
    """A process-unique id: 48 random bits per process + a counter (cheaper than uuid4 per entry)."""
    return f"{_EXPOSURE_ID_PREFIX}{next(_EXPOSURE_ID_COUNTER):x}"


EXPOSURE_ENCODER = msgspec.json.Encoder()
EXPOSURE_DECODER = msgspec.json.Decoder(Exposure)


# -- shared with content/ ----------------------------------------------------------------------------
# ``content`` compiles Contentful entries into these; ``personalization`` reads them.

_CONTINENT_COUNTRIES = {
    "AF": "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA MG ML "
          "MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW",
    "AN": "AQ BV GS HM TF",
    "AS": "AE AF AM AZ BD BH BN BT CC CN CX GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ LA LB LK MM "
          "MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TL TM TR TW UZ VN YE",
    "EU": "AD AL AT AX BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI LT "
          "LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK",
    "NA": "AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX NI PA "
          "PM PR SV SX TC TT US VC VG VI",
    "OC": "AS AU CK FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV UM VU WF WS",
    "SA": "AR BO BR CL CO EC FK GF GY PE PY SR UY VE",
}  # fmt: skip
#: ISO 3166-1 alpha-2 country code → continent code (GeoNames' assignment).
CONTINENTS: dict[str, str] = {
    country: continent
    for continent, countries in _CONTINENT_COUNTRIES.items()
    for country in countries.split()
}

#: Every event type front ends send: the tags of ``personalization.measurement.events.Event`` (a test
#: holds the two together). Journey stages name them.
EVENT_TYPES: tuple[str, ...] = (
    "page_view", "click", "conversion", "task", "abandonment", "survey", "feedback", "purchase", "identify",
    "survey_shown", "survey_dismissed",
)  # fmt: skip

#: Goal names may not start with this. The aggregator keeps, per visitor, each goal's lifetime value
#: as the hash field ``<goal>`` and its lifetime count as ``n:<goal>`` (measurement's
#: ``scripts/outcome.lua``, the CUPED covariates), so a goal named ``n:signup`` would be counted into
#: ``signup``'s count. Here, not in measurement, because content checks goal names too.
RESERVED_GOAL_PREFIX = "n:"


def goal_name_problem(goal: str) -> str | None:
    """Why ``goal`` cannot be a conversion goal's name (``None``: it can)."""
    if goal.startswith(RESERVED_GOAL_PREFIX):
        return (
            f"goal names starting with {RESERVED_GOAL_PREFIX!r} are reserved (Vary stores a visitor's count "
            f"of goal X as {RESERVED_GOAL_PREFIX}X); got {goal[:64]!r}, rename the goal"
        )
    return None


class JourneyStage(Struct, frozen=True, kw_only=True):
    """One stage of a journey: the events that show a visitor is at it.

    ``touchpoints`` / ``event_types`` empty = any. An event type is ``type`` or ``type:detail``
    (see the module doc).
    """

    key: str
    name: str
    touchpoints: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()

    def matches(self, event_type: str, touchpoint: str | None, detail: str | None = None) -> bool:
        """Whether an event of this type (and detail: goal, task name or survey metric) at this
        touchpoint puts the visitor at this stage. An event without a touchpoint matches only a
        stage that lists none."""
        if self.touchpoints and touchpoint not in self.touchpoints:
            return False
        return self.matches_type(event_type, detail)

    def matches_type(self, event_type: str, detail: str | None = None) -> bool:
        """Whether the event type (and detail) is one of the stage's, ignoring the touchpoint."""
        if not self.event_types:
            return True
        return event_type in self.event_types or (
            detail is not None and f"{event_type}:{detail}" in self.event_types
        )

    def at_touchpoint(self, touchpoint: str | None) -> bool:
        """Whether the touchpoint is one of the stage's (any, when it lists none)."""
        return not self.touchpoints or touchpoint in self.touchpoints


class Journey(Struct, frozen=True, kw_only=True):
    """A compiled journey: ``id`` is its entry id, ``key`` what reports are asked for by."""

    id: str
    key: str
    name: str
    stages: tuple[JourneyStage, ...]
