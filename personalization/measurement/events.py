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

    visitor_id: Id
    session_id: Id | None = None
    channel: Channel | None = None
    touchpoint: ShortText | None = None
    #: A float after construction: an ISO time is converted by :meth:`__post_init__`.
    ts: EpochSeconds | IsoTime | None = None
    #: Optional client id that makes a retried event idempotent.
    event_id: Id | None = None
    #: The visitor's analytics consent. ``false``: Vary acknowledges the event and stores nothing.
    analytics: bool = True

    def __post_init__(self) -> None:
        """Normalise an ISO ``ts`` to epoch seconds (the struct is frozen, hence ``force_setattr``).

        The message mimics msgspec's (``… - at `$.ts```) so :func:`decode_events` names the field."""
        if isinstance(self.ts, datetime):
            seconds = self.ts.timestamp()
            if not TS_MIN <= seconds <= TS_MAX:
                raise ValueError("Expected a time from 1970-01-01 to 2096-10-02 (UTC) - at `$.ts`")
            force_setattr(self, "ts", seconds)


class PageView(EventBase, frozen=True, tag="page_view"):
    page: Url | None = None
    referrer: Url | None = None


class Click(EventBase, frozen=True, tag="click"):
    target: ShortText | None = None


class Conversion(EventBase, frozen=True, tag="conversion"):
    goal: Annotated[str, Meta(min_length=1, max_length=128)]
    value: Money | None = None
    currency: Annotated[str, Meta(pattern="^[A-Z]{3}$")] | None = None


class Task(EventBase, frozen=True, tag="task"):
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    success: bool
    duration_ms: Annotated[int, Meta(ge=0, le=86_400_000)] | None = None


class Abandonment(EventBase, frozen=True, tag="abandonment"):
    task: ShortText | None = None
    step: ShortText | None = None


class Survey(EventBase, frozen=True, tag="survey"):
    """``score`` is validated per metric by the measurement code (NPS 0–10, CSAT 1–5, CES 1–7)."""

    metric: Literal["nps", "csat", "ces", "sus"]
    score: Annotated[float, Meta(ge=0, le=100)] | None = None
    answers: Annotated[list[Annotated[int, Meta(ge=1, le=5)]], Meta(min_length=10, max_length=10)] | None = None
    comment: Annotated[str, Meta(max_length=4000)] | None = None


class Feedback(EventBase, frozen=True, tag="feedback"):
    text: Annotated[str, Meta(max_length=4000)]
    problem: ShortText | None = None


class Purchase(EventBase, frozen=True, tag="purchase"):
    order_id: Id
    value: Money
    #: An ISO 4217 code (:mod:`personalization.measurement.currencies`); revenue is counted per
    #: currency, and a purchase without one under ``XXX``, ISO's "no currency".
    currency: Annotated[str, Meta(pattern="^[A-Z]{3}$")] | None = None

    def __post_init__(self) -> None:
        """Refuse a code ISO 4217 does not define (the message names the field, as msgspec's do)."""
        super().__post_init__()
        if self.currency is not None and self.currency not in ISO_4217:
            message = f"Expected an ISO 4217 currency code such as EUR or USD, got {self.currency!r}"
            raise ValueError(f"{message} - at `$.currency`")


class Identify(EventBase, frozen=True, tag="identify"):
    traits: Annotated[dict[Annotated[str, Meta(max_length=128)], TraitValue], Meta(max_length=64)] = {}


Event = PageView | Click | Conversion | Task | Abandonment | Survey | Feedback | Purchase | Identify

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
