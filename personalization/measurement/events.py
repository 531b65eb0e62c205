"""Events front ends send back: a tagged union on ``type``, decoded in one pass by msgspec.

Each kind says one thing that happened to a visitor at a touchpoint (a page, a screen, a place) on a
channel. They update the visitor's profile and are appended to the ``vary:events`` stream, where
measurement attributes them to the visitor's exposures.

``ts`` arrives as epoch seconds or as an RFC 3339 / ISO 8601 time with a UTC offset (``Z``,
``+01:00``, fractional seconds); :meth:`EventBase.__post_init__` turns the latter into epoch seconds
right after decoding, the one place it happens, so everything downstream (the stream, the
aggregation scripts, exports) keeps seeing a float.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct
from msgspec.structs import force_setattr

from personalization.measurement.currencies import ISO_4217
from personalization.store.keys import EVENTS
from personalization.types import Channel, Id, ShortText, TraitValue, Url

__all__ = [
    "Event",
    "EventBase",
    "PageView",
    "Click",
    "Conversion",
    "Task",
    "Abandonment",
    "Survey",
    "Feedback",
    "Purchase",
    "Identify",
    "SurveyShown",
    "SurveyDismissed",
    "EVENT_STREAM",
    "EVENT_ENCODER",
    "EVENT_DECODER",
    "EventError",
    "TS_MAX",
    "TS_MIN",
    "decode_events",
]

EVENT_STREAM = EVENTS

Money = Annotated[float, Meta(ge=0, le=1e12)]
#: Bounds of an event time, in epoch seconds (1970 to 2096).
TS_MIN, TS_MAX = 0.0, 4e9
EpochSeconds = Annotated[float, Meta(ge=TS_MIN, le=TS_MAX)]
#: An ISO 8601 time; without a UTC offset it would be ambiguous, so msgspec refuses it.
IsoTime = Annotated[datetime, Meta(tz=True)]


class EventBase(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    """Fields every event has. ``ts`` (Unix seconds, or an ISO 8601 time with an offset, stored as
    Unix seconds) defaults to the time Vary received it."""

    visitor_id: Annotated[
        Id, Meta(description="The visitor's id, as sent to `POST /v1/personalize` (required unless `user_id` is sent).")
    ]
    session_id: Annotated[Id, Meta(description="The session's id, if the front end keeps one.")] | None = None
    channel: (
        Annotated[
            Channel,
            Meta(description="Where it happened: `web`, `ios`, `android`, `email`, `kiosk`, `call_center` or `store`."),
        ]
        | None
    ) = None
    touchpoint: (
        Annotated[ShortText, Meta(description="The page, screen or place it happened at (a path, a screen name).")]
        | None
    ) = None
    ts: (
        Annotated[
            EpochSeconds | IsoTime,
            Meta(description="A float after construction: an ISO time is converted by `__post_init__`."),
        ]
        | None
    ) = None
    event_id: Annotated[Id, Meta(description="Optional client id that makes a retried event idempotent.")] | None = None
    analytics: Annotated[
        bool,
        Meta(description="The visitor's analytics consent. `false`: Vary acknowledges the event and stores nothing."),
    ] = True

    def __post_init__(self) -> None:
        """Normalise an ISO ``ts`` to epoch seconds (the struct is frozen, hence ``force_setattr``).

        The message mimics msgspec's (``… - at `$.ts```) so :func:`decode_events` names the field."""
        if isinstance(self.ts, datetime):
            seconds = self.ts.timestamp()
            if not TS_MIN <= seconds <= TS_MAX:
                raise ValueError("Expected a time from 1970-01-01 to 2096-10-02 (UTC) - at `$.ts`")
            force_setattr(self, "ts", seconds)


class PageView(EventBase, frozen=True, tag="page_view"):
    page: Annotated[Url, Meta(description="The page's URL.")] | None = None
    referrer: Annotated[Url, Meta(description="The referring URL.")] | None = None


class Click(EventBase, frozen=True, tag="click"):
    target: Annotated[ShortText, Meta(description="What was clicked (an element id, a link).")] | None = None


class Conversion(EventBase, frozen=True, tag="conversion"):
    goal: Annotated[
        str, Meta(min_length=1, max_length=128, description="The goal reached, as the experiences name it (`signup`).")
    ]
    value: Annotated[Money, Meta(description="The conversion's value (revenue, points), if any.")] | None = None
    currency: Annotated[str, Meta(pattern="^[A-Z]{3}$", description="ISO 4217 code of `value`, if money.")] | None = (
        None
    )


class Task(EventBase, frozen=True, tag="task"):
    name: Annotated[str, Meta(min_length=1, max_length=128, description="The task's name (`checkout`, `find-store`).")]
    success: Annotated[bool, Meta(description="Whether the person completed it.")]
    duration_ms: (
        Annotated[int, Meta(ge=0, le=86_400_000, description="How long it took, in milliseconds (at most a day).")]
        | None
    ) = None


class Abandonment(EventBase, frozen=True, tag="abandonment"):
    task: Annotated[ShortText, Meta(description="The task given up.")] | None = None
    step: Annotated[ShortText, Meta(description="The step it was given up at.")] | None = None


class Survey(EventBase, frozen=True, tag="survey"):
    """``score`` is validated per metric by the measurement code (NPS 0–10, CSAT 1–5, CES 1–7)."""

    metric: Annotated[
        Literal["nps", "csat", "ces", "sus"],
        Meta(description="`nps` (0–10), `csat` (1–5), `ces` (1–7) or `sus` (ten 1–5 answers)."),
    ]
    score: (
        Annotated[float, Meta(ge=0, le=100, description="The answer, on the metric's scale (not for `sus`).")] | None
    ) = None
    answers: (
        Annotated[
            list[Annotated[int, Meta(ge=1, le=5)]],
            Meta(
                min_length=10, max_length=10, description="`sus` only: the ten answers (1–5), in the statements' order."
            ),
        ]
        | None
    ) = None
    comment: Annotated[str, Meta(max_length=4000, description="Free text the person added.")] | None = None
    survey: (
        Annotated[
            Id,
            Meta(
                description="The key of the `varySurvey` that asked (issue 24); absent for scores collected elsewhere."
            ),
        ]
        | None
    ) = None


class Feedback(EventBase, frozen=True, tag="feedback"):
    text: Annotated[str, Meta(max_length=4000, description="What the person wrote.")]
    problem: Annotated[ShortText, Meta(description="The problem tag they picked, if any.")] | None = None
    survey: (
        Annotated[Id, Meta(description="The key of the `varySurvey` (a free-text prompt) that asked, if one did.")]
        | None
    ) = None


class SurveyShown(EventBase, frozen=True, tag="survey_shown"):
    """A survey prompt was put in front of the person: the denominator of its response rate."""

    survey: Annotated[Id, Meta(description="The key of the `varySurvey` shown.")]
    metric: Annotated[
        Literal["nps", "csat", "ces", "sus", "feedback"],
        Meta(description="What it measures: `nps`, `csat`, `ces`, `sus` or `feedback`."),
    ]


class SurveyDismissed(EventBase, frozen=True, tag="survey_dismissed"):
    """The person closed a survey prompt without answering: measured non-response, not silence."""

    survey: Annotated[Id, Meta(description="The key of the `varySurvey` dismissed.")]
    metric: Annotated[
        Literal["nps", "csat", "ces", "sus", "feedback"],
        Meta(description="What it measures: `nps`, `csat`, `ces`, `sus` or `feedback`."),
    ]


class Purchase(EventBase, frozen=True, tag="purchase"):
    order_id: Annotated[Id, Meta(description="The order's id.")]
    value: Annotated[Money, Meta(description="The order's value.")]
    currency: (
        Annotated[
            str,
            Meta(
                pattern="^[A-Z]{3}$",
                description='An ISO 4217 code (`currencies`); revenue is counted per currency, and a purchase without one under `XXX`, ISO\'s "no currency".',
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        """Refuse a code ISO 4217 does not define (the message names the field, as msgspec's do)."""
        super().__post_init__()
        if self.currency is not None and self.currency not in ISO_4217:
            message = f"Expected an ISO 4217 currency code such as EUR or USD, got {self.currency!r}"
            raise ValueError(f"{message} - at `$.currency`")


class Identify(EventBase, frozen=True, tag="identify"):
    traits: Annotated[
        dict[Annotated[str, Meta(max_length=128)], TraitValue],
        Meta(
            max_length=64, description="Traits of the visitor (plan, tier…) remembered with the profile, for audiences."
        ),
    ] = {}


Event = (
    PageView | Click | Conversion | Task | Abandonment | Survey | Feedback | Purchase | Identify
    | SurveyShown | SurveyDismissed
)

EVENT_ENCODER = msgspec.json.Encoder()
EVENT_DECODER = msgspec.json.Decoder(Event)


class EventError(msgspec.Struct, frozen=True, kw_only=True):
    """Why one event of a batch was rejected: its index, the field, and what is wrong."""

    index: int
    field: str
    message: str


def decode_events(raw_events: list[object]) -> tuple[list[tuple[int, Event]], list[EventError]]:
    """Validate each event on its own, so a bad event rejects only itself.

    Returns the good events with their batch index, and one :class:`EventError` per bad event with
    the field path inside the event (``goal``, ``answers[3]``, ``$`` for the event itself).
    """
    good: list[tuple[int, Event]] = []
    errors: list[EventError] = []
    for index, raw in enumerate(raw_events):
        try:
            good.append((index, msgspec.convert(raw, Event)))
        except msgspec.ValidationError as exc:
            message, _, path = str(exc).partition(" - at `")
            field = path.rstrip("`").removeprefix("$.").removeprefix("$")
            missing = message.removeprefix("Object missing required field `")
            if missing != message:
                field = ".".join(filter(None, [field, missing.rstrip("`")]))
            if not isinstance(raw, dict):
                field = "$"
            elif "type" not in raw:
                field = "type"
            field = field or "$"
            errors.append(EventError(index=index, field=field, message=message))
    return good, errors
