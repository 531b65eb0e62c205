"""HTTP payloads: every request and response body is a msgspec Struct.

Requests forbid unknown fields and bound every string and list, so a typo in a front end fails loudly
with the path of the bad field, and no client can make Vary hold megabytes per request. Responses embed
entry fields as ``msgspec.Raw``: the snapshot pre-encodes them once per entry and locale, so serving
them is a copy, not a re-encode.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from personalization.types import Decision, FrequencyCap, Id, Visitor
from api.loop_lag import LoopLag

__all__ = [
    "PersonalizeRequest",
    "PersonalizedEntry",
    "PersonalizeResponse",
    "Includes",
    "ChangeMeta",
    "VariableChange",
    "DeliveredAsset",
    "EventBatch",
    "EventsAccepted",
    "RejectedEvent",
    "ExperienceInfo",
    "ExperienceList",
    "Health",
    "Readiness",
    "ContentSyncInfo",
    "ContentIssueInfo",
    "ContentIssueList",
    "WebhookAccepted",
    "ErrorBody",
    "ModelInfo",
    "ModelList",
    "ActivateModel",
    "MAX_ENTRIES",
    "MAX_EVENTS",
]

MAX_ENTRIES = 50
MAX_EVENTS = 500
#: A BCP 47 tag; ``_`` is accepted for ``-`` (``en_US`` is ``en-US``), as on the GET routes.
Locale = Annotated[str, Meta(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")]


class PersonalizeRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/personalize``: which baseline entries to personalize, for whom, in which locale."""

    visitor: Visitor
    entries: Annotated[list[Id], Meta(min_length=1, max_length=MAX_ENTRIES)]
    locale: Locale | None = None
    preview: bool = False
    #: ``auto``: one exposure per entry is logged now. ``on_view``: none is logged; each entry carries an
    #: ``exposure_token`` to send to ``POST /v1/exposures`` when the component is actually seen.
    exposures: Literal["auto", "on_view"] = "auto"
    #: ``compact``: Vary's shape (links resolved in place). ``cda``: the Content Delivery API's own
    #: shape — each entry's ``sys``/``fields``/``metadata`` with links as links, targets in ``includes``.
    format: Literal["compact", "cda"] = "compact"
    #: Also decide every Contentful Personalization custom flag (``InlineVariable``) of the space and
    #: answer them in ``changes``, as Ninetailed's Experience API does (docs/contentful.md).
    flags: bool = False


class ChangeMeta(Struct, frozen=True, kw_only=True, rename="camel"):
    """Which experience set a flag, and on which arm (Ninetailed's ``meta``)."""

    experience_id: str
    variant_index: int


class VariableChange(Struct, frozen=True, kw_only=True):
    """One custom flag's value for this visitor, in Ninetailed's ``Change`` shape (``useFlag`` reads it)."""

    key: str
    type: Literal["Variable"] = "Variable"
    value: Any
    meta: ChangeMeta
    #: With ``"exposures": "on_view"``: the flag's signed exposure, for ``POST /v1/exposures`` once used.
    exposure_token: str | None = None


class Includes(Struct, frozen=True, kw_only=True, rename={"entries": "Entry", "assets": "Asset"}):
    """What the answer's entries link to, each once, as the CDA's ``includes``: in the compact format
    the targets of rich-text and Object-field links (Link fields are resolved in place), in the
    ``cda`` format every link target, within the space's link depth."""

    entries: list[Any] = []  # msgspec.Raw each: an entry in the answer's format
    assets: list[Any] = []  # msgspec.Raw each: an asset in the answer's format


class DeliveredAsset(Struct, frozen=True, kw_only=True):
    """``GET /v1/assets/{id}``: one published asset in the served locale."""

    locale: str
    format: Literal["compact", "cda"]
    asset: Any  # msgspec.Raw: compact {"id", "title", "url", ...} or CDA {"sys", "fields", "metadata"}


class PersonalizedEntry(Decision, frozen=True, kw_only=True):
    """One entry as served: the decision (its fields are :class:`~personalization.types.Decision`'s),
    why, and the chosen variant's content type and fields in the locale."""

    content_type: str | None
    fields: Any  # msgspec.Raw: pre-encoded JSON object of the entry's fields; null when hidden
    #: A hidden variant (Contentful Personalization's "hidden: true"): render nothing for this entry.
    hidden: bool = False
    #: With ``"exposures": "on_view"``: the signed exposure, for ``POST /v1/exposures`` once seen.
    exposure_token: str | None = None
    #: The space locale the fields are in (the requested one, matched by BCP 47 rules).
    locale: str | None = None
    #: ``format=cda`` only: the CDA ``sys`` (with ``locale``) and ``metadata`` of the served variant.
    sys: Any = None
    metadata: Any = None
    #: ``GET /v1/entries/{id}`` only: what this entry links to (POST answers carry one ``includes``).
    includes: Includes | None = None


class PersonalizeResponse(Struct, frozen=True, kw_only=True):
    visitor_id: str
    locale: str
    segments: dict[str, float]
    model_version: str | None
    content_version: str
    #: True when the decision was made without the visitor's profile (Redis slow or down).
    degraded: bool
    entries: list[PersonalizedEntry]
    #: What the entries link to (rich text, Object fields; all links with ``format=cda``), each once.
    includes: Includes = msgspec.field(default_factory=Includes)
    #: With ``"flags": true``: the custom flags of every experience the visitor is in, by experience
    #: entry id (a front end reads the first change with a key).
    changes: list[VariableChange] = []


class EventBatch(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/events``: up to 500 events, each an object with a ``type`` (page_view, click,
    conversion, task, abandonment, survey, feedback, purchase, identify) and its fields. Each event is
    validated on its own: a bad one is rejected with its index and field, the others are recorded."""

    events: Annotated[list[dict[str, Any]], Meta(min_length=1, max_length=MAX_EVENTS)]


class RejectedEvent(Struct, frozen=True, kw_only=True):
    index: int
    field: str
    message: str


class EventsAccepted(Struct, frozen=True, kw_only=True):
    #: Events recorded now.
    accepted: int
    #: Events already recorded under the same ``event_id`` (a retried batch): not counted twice.
    duplicates: int
    #: Events with ``analytics: false``: acknowledged, nothing stored.
    dropped: int = 0
    rejected: list[RejectedEvent] = []
    #: Events kept in the local spool because Redis was unreachable: written (once) when it returns.
    spooled: int = 0


class ExperienceInfo(Struct, frozen=True, kw_only=True):
    key: str
    name: str
    type: str
    entries: list[str]
    variants: list[str]
    audience: str | None
    weights: list[float]
    traffic_allocation: float
    holdout: float
    goals: list[str]
    content_type: str | None
    #: ``ended`` / ``scheduled`` by its schedule; else ``paused_by_guardrail`` when a guardrail paused
    #: any variant in the current phase, else ``running``.
    status: Literal["running", "scheduled", "ended", "paused_by_guardrail"] = "running"
    #: Variant → why a guardrail paused it (its visitors get the baseline until resumed).
    paused: dict[int, str] = {}
    #: Mutually exclusive layer (GrowthBook namespace) the experience shares with others, if any.
    layer: str | None = None
    #: Its share of the layer, ``[start, end)`` within [0, 1): a visitor whose layer hash falls outside
    #: gets the baseline. Equal shares in key order when the content gives none.
    layer_range: tuple[float, float] | None = None
    #: At most ``max_exposures`` exposures per person per ``period`` (every channel counts); past it
    #: the baseline is served. ``null``: no cap.
    frequency_cap: FrequencyCap | None = None
    #: How visitors are bucketed: ``growthbook`` (Vary's own hashing) or ``ninetailed`` (an experience
    #: of a Contentful Personalization space: the variant its SDK would pick).
    bucketing: Literal["growthbook", "ninetailed"] = "growthbook"


class ExperienceList(Struct, frozen=True, kw_only=True):
    experiences: list[ExperienceInfo]


class Health(Struct, frozen=True):
    status: str


class ContentSyncInfo(Struct, frozen=True, kw_only=True):
    """How this worker's content got here: syncs done, the last one's time and changes, the last error."""

    source: str
    syncs: int
    failed_syncs: int
    last_sync_at: float | None
    #: ``last_sync_at`` in ISO 8601 UTC (the epoch field stays for one release).
    last_sync_at_iso: str | None = None
    last_sync_changes: int
    last_error: str | None


class Readiness(Struct, frozen=True, kw_only=True):
    ready: bool
    #: ``fresh`` (last sync succeeded), ``stale`` (serving stored/older content), ``loading``, ``failed``.
    content: str
    content_version: str | None
    #: Seconds since this worker swapped to the served snapshot.
    content_age_s: float | None
    content_issues: int
    content_sync: ContentSyncInfo
    redis: str
    model: str | None
    exposures_pending: int
    exposures_written: int
    exposures_dropped: int
    #: Exposures kept in the local spool while Redis was unreachable, and replayed since.
    exposures_spooled: int = 0
    exposures_replayed: int = 0
    spool_bytes: int = 0
    #: Events spooled while Redis was unreachable and replayed since (this worker), events waiting
    #: in its spool now, and the spool file's size.
    events_spooled: int = 0
    events_replayed: int = 0
    events_spool_depth: int = 0
    events_spool_bytes: int = 0
    #: Bytes in this worker's exposure journal (accepted exposures not yet known to be in Redis or
    #: the spool; what a replay would recover if the worker were killed now).
    journal_bytes: int = 0
    #: Decisions this worker made without the visitor's profile (Redis slow, stalled or down).
    decisions_degraded: int = 0
    #: True while profile reads are refused at once (Redis stalled or unreachable; a probe is out).
    profile_breaker_open: bool = False
    #: How late this worker's event loop woke up over the last minute (api/loop_lag.py); null before
    #: the app started.
    loop_lag: LoopLag | None = None


class ContentIssueInfo(Struct, frozen=True, kw_only=True):
    entry_id: str
    content_type: str
    problem: str
    fix: str


class ContentIssueList(Struct, frozen=True, kw_only=True):
    content_version: str
    issues: list[ContentIssueInfo]


class WebhookAccepted(Struct, frozen=True, kw_only=True):
    topic: str
    entity_id: str | None
    #: Whether the topic changes served content (then a sync ran before this answer).
    synced: bool
    content_version: str | None


class ModelInfo(Struct, frozen=True, kw_only=True):
    """One registered model: a segment model (``kind: segments``) or a bandit policy (``policy``)."""

    version: str
    kind: str
    experience: str | None
    created_at: float
    segments: list[str]
    metrics: dict[str, Any]
    sklearn_version: str
    rows: dict[str, int]
    training_window: dict[str, Any] | None
    active: bool


class ModelList(Struct, frozen=True, kw_only=True):
    #: The active segment model's version.
    active: str | None
    #: The active policy per ``bandit`` experience.
    policies: dict[str, str]
    models: list[ModelInfo]


class ActivateModel(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: Annotated[str, Meta(min_length=1, max_length=128)]
    #: Activate a policy even though its launch gate did not pass (recorded: docs/models.md).
    force: bool = False


class ErrorBody(Struct, frozen=True, kw_only=True):
    """Every 4xx: ``status_code``, a ``detail`` sentence, and ``extra`` saying where, when known:
    a list of ``{key, message, source}`` for bad input, an object for a 429 (limit, scope, window)."""

    status_code: int
    detail: str
    extra: list[dict[str, Any]] | dict[str, Any] | None = None


# Raw passes through untouched; the response schema documents fields as a JSON object.
RawFields = msgspec.Raw
