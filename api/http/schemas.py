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

__all__ = [
    "PersonalizeRequest",
    "PersonalizedEntry",
    "PersonalizeResponse",
    "SurveyPrompt",
    "Includes",
    "ChangeMeta",
    "VariableChange",
    "DeliveredAsset",
    "EventBatch",
    "EventsAccepted",
    "RejectedEvent",
    "ExperienceInfo",
    "ExperienceList",
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

    visitor: Annotated[Visitor, Meta(description="Who is asking: the visitor's id and request-time context.")]
    entries: Annotated[
        list[Id],
        Meta(
            min_length=1,
            max_length=MAX_ENTRIES,
            description="Ids of the baseline entries to personalize (1–50), as in Contentful.",
        ),
    ]
    locale: (
        Annotated[
            Locale,
            Meta(
                description="The locale to answer in (BCP 47, `en-US`; `_` accepted for `-`); null: the space's default."
            ),
        ]
        | None
    ) = None
    preview: Annotated[
        bool, Meta(description="Serve draft content (Contentful's Preview API) and log no exposures: for editors.")
    ] = False
    exposures: Annotated[
        Literal["auto", "on_view"],
        Meta(
            description="`auto`: one exposure per entry is logged now. `on_view`: none is logged; each entry carries an `exposure_token` to send to `POST /v1/exposures` when the component is actually seen."
        ),
    ] = "auto"
    format: Annotated[
        Literal["compact", "cda"],
        Meta(
            description="`compact`: Vary's shape (links resolved in place). `cda`: the Content Delivery API's own shape — each entry's `sys`/`fields`/`metadata` with links as links, targets in `includes`."
        ),
    ] = "compact"
    flags: Annotated[
        bool,
        Meta(
            description="Also decide every Contentful Personalization custom flag (`InlineVariable`) of the space and answer them in `changes`, as Ninetailed's Experience API does (docs/contentful.md)."
        ),
    ] = False
    surveys: Annotated[
        bool, Meta(description='With `"surveys": true`: answer the survey due for this person now, if any (issue 24).')
    ] = False


class ChangeMeta(Struct, frozen=True, kw_only=True, rename="camel"):
    """Which experience set a flag, and on which arm (Ninetailed's ``meta``)."""

    experience_id: Annotated[str, Meta(description="The experience entry's id that set the flag.")]
    variant_index: Annotated[int, Meta(description="The arm served: 0 is the baseline.")]


class VariableChange(Struct, frozen=True, kw_only=True):
    """One custom flag's value for this visitor, in Ninetailed's ``Change`` shape (``useFlag`` reads it)."""

    key: Annotated[str, Meta(description="The custom flag's key.")]
    type: Annotated[Literal["Variable"], Meta(description="Always `Variable` (Ninetailed's change type).")] = "Variable"
    value: Annotated[Any, Meta(description="The flag's value for this visitor (any JSON).")]
    meta: Annotated[ChangeMeta, Meta(description="Which experience set the flag, and on which arm.")]
    exposure_token: (
        Annotated[
            str,
            Meta(
                description='With `"exposures": "on_view"`: the flag\'s signed exposure, for `POST /v1/exposures` once used.'
            ),
        ]
        | None
    ) = None


class Includes(Struct, frozen=True, kw_only=True, rename={"entries": "Entry", "assets": "Asset"}):
    """What the answer's entries link to, each once, as the CDA's ``includes``: in the compact format
    the targets of rich-text and Object-field links (Link fields are resolved in place), in the
    ``cda`` format every link target, within the space's link depth."""

    entries: Annotated[
        list[Any], Meta(description="Linked entries, each once, in the answer's format (sent as `Entry`).")
    ] = []  # msgspec.Raw each: an entry in the answer's format
    assets: Annotated[
        list[Any], Meta(description="Linked assets, each once, in the answer's format (sent as `Asset`).")
    ] = []  # msgspec.Raw each: an asset in the answer's format


class DeliveredAsset(Struct, frozen=True, kw_only=True):
    """``GET /v1/assets/{id}``: one published asset in the served locale."""

    locale: Annotated[str, Meta(description="The space locale the asset is in.")]
    format: Annotated[
        Literal["compact", "cda"], Meta(description="`compact` (Vary's shape) or `cda` (the Content Delivery API's).")
    ]
    asset: Annotated[
        Any, Meta(description="The asset: compact `{id, title, url, …}` or CDA `{sys, fields, metadata}`.")
    ]  # msgspec.Raw: compact {"id", "title", "url", ...} or CDA {"sys", "fields", "metadata"}


class PersonalizedEntry(Decision, frozen=True, kw_only=True):
    """One entry as served: the decision (its fields are :class:`~personalization.types.Decision`'s),
    why, and the chosen variant's content type and fields in the locale."""

    content_type: Annotated[str, Meta(description="The served variant's content type id; null when hidden.")] | None
    fields: Annotated[
        Any, Meta(description="The served variant's fields in the locale (a JSON object); null when hidden.")
    ]  # msgspec.Raw: pre-encoded JSON object of the entry's fields; null when hidden
    hidden: Annotated[
        bool,
        Meta(
            description='A hidden variant (Contentful Personalization\'s "hidden: true"): render nothing for this entry.'
        ),
    ] = False
    exposure_token: (
        Annotated[
            str,
            Meta(description='With `"exposures": "on_view"`: the signed exposure, for `POST /v1/exposures` once seen.'),
        ]
        | None
    ) = None
    locale: (
        Annotated[
            str, Meta(description="The space locale the fields are in (the requested one, matched by BCP 47 rules).")
        ]
        | None
    ) = None
    sys: Annotated[
        Any, Meta(description="`format=cda` only: the CDA `sys` (with `locale`) and `metadata` of the served variant.")
    ] = None
    metadata: Annotated[
        Any, Meta(description="`format=cda` only: the CDA `metadata` (tags, concepts) of the served variant.")
    ] = None
    includes: (
        Annotated[
            Includes,
            Meta(
                description="`GET /v1/entries/{id}` only: what this entry links to (POST answers carry one `includes`)."
            ),
        ]
        | None
    ) = None


class SurveyPrompt(Struct, frozen=True, kw_only=True):
    """A survey due for this person now (issue 24): a ``varySurvey`` entry in the answer's locale.

    The front end shows it, then posts ``survey_shown``, and ``survey`` (or ``feedback``) or
    ``survey_dismissed`` events carrying ``key`` as ``survey``."""

    key: Annotated[str, Meta(description="The survey's key: send it as `survey` on the events it leads to.")]
    entry_id: Annotated[str, Meta(description="The `varySurvey` entry's id.")]
    metric: Annotated[
        Literal["nps", "csat", "ces", "sus", "feedback"],
        Meta(description="What it measures: `nps`, `csat`, `ces`, `sus` or free-text `feedback`."),
    ]
    question: Annotated[str, Meta(description="The question, in the answer's locale.")]
    locale: Annotated[str, Meta(description="The locale of the texts.")]
    scale_min: (
        Annotated[
            int,
            Meta(
                description="The answer scale (NPS 0–10, CSAT 1–5, CES 1–7, SUS 1–5 per statement); null for feedback."
            ),
        ]
        | None
    ) = None
    scale_max: Annotated[int, Meta(description="The highest answer of the scale; null for feedback.")] | None = None
    low_label: Annotated[str, Meta(description="Label of the scale's low end (`Not at all likely`).")] | None = None
    high_label: Annotated[str, Meta(description="Label of the scale's high end (`Extremely likely`).")] | None = None
    items: Annotated[list[str], Meta(description="SUS: the ten statements, in order.")] = []
    problem_tags: Annotated[list[str], Meta(description="Free-text feedback: the problem tags a person may pick.")] = []
    experience_key: (
        Annotated[
            str,
            Meta(
                description="The experience the survey is attached to and the variant this person was served, if any."
            ),
        ]
        | None
    ) = None
    variant: (
        Annotated[int, Meta(description="The variant this person was served in `experience_key`; null without one.")]
        | None
    ) = None
    touchpoint: Annotated[str, Meta(description="The touchpoint the survey is shown at, if it names one.")] | None = (
        None
    )
    trigger: Annotated[
        str,
        Meta(
            description="What made it due (`task_success:<name>`, `page:<touchpoint>`, `visits:<n>`, `purchase`, `exit_intent`)."
        ),
    ]


class PersonalizeResponse(Struct, frozen=True, kw_only=True):
    visitor_id: Annotated[
        str, Meta(description="The visitor the answer is for (the person's id once linked to a `user_id`).")
    ]
    locale: Annotated[str, Meta(description="The space locale the fields are in.")]
    segments: Annotated[
        dict[str, float], Meta(description="Segment → this visitor's score (0–1) from the active segment model.")
    ]
    model_version: (
        Annotated[str, Meta(description="The segment model version that scored the visitor; null without a model.")]
        | None
    )
    content_version: Annotated[str, Meta(description="The content snapshot the answer was made from.")]
    degraded: Annotated[
        bool, Meta(description="True when the decision was made without the visitor's profile (Redis slow or down).")
    ]
    entries: Annotated[
        list[PersonalizedEntry], Meta(description="One answer per requested entry, in the request's order.")
    ]
    includes: Annotated[
        Includes,
        Meta(
            description="What the entries link to (rich text, Object fields; all links with `format=cda`), each once."
        ),
    ] = msgspec.field(default_factory=Includes)
    changes: Annotated[
        list[VariableChange],
        Meta(
            description='With `"flags": true`: the custom flags of every experience the visitor is in, by experience entry id (a front end reads the first change with a key).'
        ),
    ] = []
    survey: Annotated[SurveyPrompt, Meta(description='With `"surveys": true`: the survey due now, or null.')] | None = (
        None
    )


class EventBatch(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/events``: up to 500 events, each an object with a ``type`` (one of the kinds of
    :data:`personalization.measurement.events.Event`) and its fields. Each event is validated on its
    own, so the field stays ``list[dict]`` here: a bad one is rejected with its index and ``key``, the
    others are recorded. The API reference types the items as the union (api/http/openapi_docs.py)."""

    events: Annotated[
        list[dict[str, Any]],
        Meta(
            min_length=1,
            max_length=MAX_EVENTS,
            description="1–500 events, each one kind (`type`) with its fields; each is validated on its own.",
        ),
    ]


class RejectedEvent(Struct, frozen=True, kw_only=True):
    """One event of the batch that was not recorded, in the vocabulary of a 4xx body's ``extra``
    (``key``, ``message``); ``field`` is the older name of the place, kept for one release."""

    index: Annotated[int, Meta(description="Position of the event in the request's `events` (from 0).")]
    key: Annotated[str, Meta(description="Where the event is wrong, as a 4xx body's `extra[].key` says it: "
                             "`events[<index>].<field>` (`events[3].goal`; `$` for the event as a whole).")]
    message: Annotated[str, Meta(description="What is wrong there, as a 4xx body's `extra[].message`.")]
    field: Annotated[str, Meta(description="Deprecated alias (one release): the field inside the event, "
                               "`key` without `events[<index>].` (`goal`, `answers[3]`, `$`).")]


class EventsAccepted(Struct, frozen=True, kw_only=True):
    accepted: Annotated[int, Meta(description="Events recorded now.")]
    duplicates: Annotated[
        int, Meta(description="Events already recorded under the same `event_id` (a retried batch): not counted twice.")
    ]
    dropped: Annotated[int, Meta(description="Events with `analytics: false`: acknowledged, nothing stored.")] = 0
    rejected: Annotated[
        list[RejectedEvent], Meta(description="Events not recorded, with where (`key`) and why (`message`), by index.")
    ] = []
    spooled: Annotated[
        int,
        Meta(
            description="Events kept in the local spool because Redis was unreachable: written (once) when it returns."
        ),
    ] = 0


class ExperienceInfo(Struct, frozen=True, kw_only=True):
    key: Annotated[str, Meta(description="The experience's key.")]
    name: Annotated[str, Meta(description="Its display name.")]
    type: Annotated[
        str,
        Meta(
            description="`personalization` (segments decide), `ab_test` (fixed weights) or `bandit` (a learned policy)."
        ),
    ]
    entries: Annotated[list[str], Meta(description="The baseline entries it personalizes.")]
    variants: Annotated[list[str], Meta(description="Entry id of each variant; the first is control.")]
    audience: Annotated[str, Meta(description="The audience a visitor must be in to enter; null: everyone.")] | None
    weights: Annotated[list[float], Meta(description="Share of traffic per variant (sums to 1).")]
    traffic_allocation: Annotated[float, Meta(description="Share of the audience that enters the experience (0–1).")]
    holdout: Annotated[float, Meta(description="Share of entrants kept on the baseline as a holdout (0–1).")]
    goals: Annotated[list[str], Meta(description="The goals results compare the variants on; the first is primary.")]
    content_type: Annotated[str, Meta(description="The content type of the entries it personalizes, if one.")] | None
    status: Annotated[
        Literal["running", "scheduled", "ended", "paused_by_guardrail"],
        Meta(
            description="`ended` / `scheduled` by its schedule; else `paused_by_guardrail` when a guardrail paused any variant in the current phase, else `running`."
        ),
    ] = "running"
    paused: Annotated[
        dict[int, str],
        Meta(description="Variant → why a guardrail paused it (its visitors get the baseline until resumed)."),
    ] = {}
    layer: (
        Annotated[
            str,
            Meta(
                description="Mutually exclusive layer (GrowthBook namespace) the experience shares with others, if any."
            ),
        ]
        | None
    ) = None
    layer_range: (
        Annotated[
            tuple[float, float],
            Meta(
                description="Its share of the layer, `[start, end)` within [0, 1): a visitor whose layer hash falls outside gets the baseline. Equal shares in key order when the content gives none."
            ),
        ]
        | None
    ) = None
    frequency_cap: (
        Annotated[
            FrequencyCap,
            Meta(
                description="At most `max_exposures` exposures per person per `period` (every channel counts); past it the baseline is served. `null`: no cap."
            ),
        ]
        | None
    ) = None
    bucketing: Annotated[
        Literal["growthbook", "ninetailed"],
        Meta(
            description="How visitors are bucketed: `growthbook` (Vary's own hashing) or `ninetailed` (an experience of a Contentful Personalization space: the variant its SDK would pick)."
        ),
    ] = "growthbook"


class ExperienceList(Struct, frozen=True, kw_only=True):
    experiences: Annotated[list[ExperienceInfo], Meta(description="Every experience of the content snapshot.")]


class ContentIssueInfo(Struct, frozen=True, kw_only=True):
    entry_id: Annotated[str, Meta(description="The Contentful entry with the problem.")]
    content_type: Annotated[str, Meta(description="Its content type.")]
    problem: Annotated[str, Meta(description="What Vary could not use, in words.")]
    fix: Annotated[str, Meta(description="What to change in Contentful.")]


class ContentIssueList(Struct, frozen=True, kw_only=True):
    content_version: Annotated[str, Meta(description="The content snapshot the issues are of.")]
    issues: Annotated[list[ContentIssueInfo], Meta(description="Every issue found.")]


class WebhookAccepted(Struct, frozen=True, kw_only=True):
    topic: Annotated[
        str, Meta(description="The webhook's `X-Contentful-Topic`, e.g. `ContentManagement.Entry.publish`.")
    ]
    entity_id: Annotated[str, Meta(description="The entry or asset the webhook is about, if any.")] | None
    synced: Annotated[
        bool, Meta(description="Whether the topic changes served content (then a sync ran before this answer).")
    ]
    content_version: Annotated[str, Meta(description="The content snapshot served after the webhook.")] | None


class ModelInfo(Struct, frozen=True, kw_only=True):
    """One registered model: a segment model (``kind: segments``) or a bandit policy (``policy``)."""

    version: Annotated[str, Meta(description="The model's version.")]
    kind: Annotated[str, Meta(description="`segments` (a segment model) or `policy` (a bandit policy).")]
    experience: (
        Annotated[str, Meta(description="The bandit experience a policy is for; null for a segment model.")] | None
    )
    created_at: Annotated[float, Meta(description="When the model was registered, Unix seconds.")]
    segments: Annotated[list[str], Meta(description="The segments a segment model scores.")]
    metrics: Annotated[dict[str, Any], Meta(description="Training metrics from the model card (name → value).")]
    sklearn_version: Annotated[
        str, Meta(description="The scikit-learn version it was trained with (must match the server's).")
    ]
    rows: Annotated[dict[str, int], Meta(description="Training rows per split (`train`, `test`, …).")]
    training_window: (
        Annotated[
            dict[str, Any],
            Meta(description="The data period it was trained on, from the card; null when the card has none."),
        ]
        | None
    )
    active: Annotated[bool, Meta(description="Whether this version is active now.")]


class ModelList(Struct, frozen=True, kw_only=True):
    active: Annotated[str, Meta(description="The active segment model's version.")] | None
    policies: Annotated[dict[str, str], Meta(description="The active policy per `bandit` experience.")]
    models: Annotated[list[ModelInfo], Meta(description="Every registered model's card.")]


class ActivateModel(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: Annotated[str, Meta(min_length=1, max_length=128, description="The registered version to activate.")]
    force: Annotated[
        bool, Meta(description="Activate a policy even though its launch gate did not pass (recorded: docs/models.md).")
    ] = False


class ErrorBody(Struct, frozen=True, kw_only=True):
    """Every 4xx: ``status_code``, a ``detail`` sentence, and ``extra`` saying where, when known:
    a list of ``{key, message, source}`` for bad input, an object for a 429 (limit, scope, window)."""

    status_code: Annotated[int, Meta(description="The HTTP status, repeated in the body.")]
    detail: Annotated[str, Meta(description="What went wrong, in one sentence.")]
    extra: (
        Annotated[
            list[dict[str, Any]] | dict[str, Any],
            Meta(
                description="Where, when known: for bad input a list of `{key, message, source}` (the same `key` and `message` as a 202's `rejected`); for a 429 `{limit, window_s, scope}`."
            ),
        ]
        | None
    ) = None


# Raw passes through untouched; the response schema documents fields as a JSON object.
RawFields = msgspec.Raw
