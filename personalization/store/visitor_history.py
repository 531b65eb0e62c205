"""The bounded per-visitor history: which pages a visitor viewed and which events they sent, and when.

Why: Contentful Personalization (Ninetailed) audiences say "has viewed /pricing 3 times", "fewer than
2 times", "in the last 7 days", "performed `signup` twice this week" — rules over a visitor's past,
which the profile's all-time counters cannot answer. The history keeps just enough for them, with a
hard bound per visitor, and travels with the profile: the profile read fetches it in the same
pipelined round trip (:class:`~personalization.store.profiles.RedisProfileStore`), and the decision
parses it only when an audience reads ``history`` (:mod:`personalization.decision.history`).

Layout: one hash per visitor, ``vary:vh:{<visitor tag>}:h`` (:func:`~personalization.store.keys.
history_key`), in the visitor's slot like every other key of theirs, so ``DELETE /v1/visitors/{id}``
erases it with the rest (:mod:`personalization.store.erasure` deletes every ``vary:vh:{<tag>}:*``).

=====================  ==========================================================================
``p:<page>``           a page viewed (``page_view`` events): the URL without query string and
                       fragment (or the bare path the front end sent), at most :data:`PAGE_CHARS`
                       characters → ``"<views> <ts> <ts> …"``: all-time views, then the Unix
                       seconds of the last :data:`PAGE_STAMPS` views, oldest first
``e:<event>``          an event sent (``conversion`` events, by goal) → ``"<count> <ts> …"``, the
                       last :data:`EVENT_STAMPS` times
=====================  ==========================================================================

Bounds: at most :data:`MAX_PAGES` pages and :data:`MAX_EVENTS` event names; a new one beyond the cap
evicts the one seen least recently. Worst case per visitor (every page URL at its longest, every
goal name at 128 characters, every timestamp kept): 50 × (2 + 256 + 3 + 10 × 11) + 32 × (2 + 128 + 3
+ 20 × 11) = 29,846 bytes of field data — :data:`MAX_BYTES`; typical visitors hold a few hundred.
It lives :data:`~personalization.store.profiles.PROFILE_TTL_S` (400 days) after the visitor's last
event, like the profile. It is written by the event script, once per event (the event id marker
keeps a retried event from counting twice), and only for events with analytics consent: events
sent with ``analytics: false`` are dropped before they reach Redis
(:meth:`~personalization.measurement.recorder.EventRecorder.accept`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from redis.asyncio import Redis

from personalization.decision.history import EVENT_PREFIX, PAGE_PREFIX
from personalization.measurement.events import Conversion, Event, PageView
from personalization.store.keys import history_key

__all__ = [
    "EVENT_STAMPS",
    "HISTORY_LUA",
    "MAX_BYTES",
    "MAX_EVENTS",
    "MAX_PAGES",
    "PAGE_CHARS",
    "PAGE_STAMPS",
    "history_field",
    "history_limits",
    "page_of",
    "read_history",
]

#: Distinct pages kept per visitor, and timestamps kept per page.
MAX_PAGES = 50
PAGE_STAMPS = 10
#: Distinct event names kept per visitor, and timestamps kept per event name.
MAX_EVENTS = 32
EVENT_STAMPS = 20
#: Longest page kept (longer ones are cut to this many characters).
PAGE_CHARS = 256
_EVENT_CHARS = 128  # a goal's longest name (personalization.measurement.events.Conversion)
_STAMP_BYTES = 11  # ' ' + ten digits of Unix seconds
_COUNT_BYTES = 3  # the count and its separator, typically; a count of 10**k adds k - 2 bytes
#: Worst-case bytes of field names and values per visitor.
MAX_BYTES = (MAX_PAGES * (len(PAGE_PREFIX) + PAGE_CHARS + _COUNT_BYTES + PAGE_STAMPS * _STAMP_BYTES)
             + MAX_EVENTS * (len(EVENT_PREFIX) + _EVENT_CHARS + _COUNT_BYTES + EVENT_STAMPS * _STAMP_BYTES))

#: The Lua function the event script calls (the recorder prepends it to that script).
HISTORY_LUA = (Path(__file__).parent / "scripts" / "history_record.lua").read_text()


def page_of(page: str) -> str:
    """The page as the history keeps it: the URL without query string and fragment, or the bare
    path; at most :data:`PAGE_CHARS` characters."""
    if page.startswith("/") and "?" not in page and "#" not in page:
        return page[:PAGE_CHARS]
    parts = urlsplit(page)
    if parts.scheme and parts.netloc:
        kept = f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
    else:
        kept = parts.path or "/"
    return kept[:PAGE_CHARS]


def history_field(event: Event) -> str | None:
    """The history field an event counts into, ``None`` when it counts into none."""
    if isinstance(event, PageView) and event.page:
        return PAGE_PREFIX + page_of(event.page)
    if isinstance(event, Conversion):
        return EVENT_PREFIX + event.goal
    return None


def history_limits(field: str) -> tuple[int, int]:
    """(timestamps kept, fields of that kind kept) for a history field."""
    return (PAGE_STAMPS, MAX_PAGES) if field.startswith(PAGE_PREFIX) else (EVENT_STAMPS, MAX_EVENTS)


async def read_history(redis: Redis, visitor_id: str) -> dict[str, str]:
    """The visitor's raw history fields (for an export or a check; decisions get it with the profile)."""
    raw = await redis.hgetall(history_key(visitor_id))
    return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
