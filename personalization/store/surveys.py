"""A person's survey state in Redis: one small hash, read once when a survey may be due.

Why a store of its own: the cap ("at most one survey per 30 days") must hold across web, apps and
email, so it cannot live in a browser; and whether a task or an order just happened must be known
when the person next asks for content, on any channel. Both are kept here, per person:

======================  =======================================================================
``last``                epoch s of the last survey shown to the person, any survey, any channel
``s:<survey>``          epoch s this survey was last shown
``n:<survey>``          how often it was shown
``t:<trigger>``         epoch s a watched trigger last fired (``task_success:checkout``,
                        ``purchase``; only triggers some survey of the space waits for)
======================  =======================================================================

Key ``vary:vh:{<visitor tag>}:sv`` (:func:`~personalization.store.keys.survey_state_key`): in the
person's slot like all their keys, so ``DELETE /v1/visitors/{id}`` erases it with the rest (the
erasure deletes every ``vary:vh:{<tag>}:*``). It lives
:data:`~personalization.store.profiles.PROFILE_TTL_S` after its last write, like the profile.

**Written when the events arrive** (:func:`note_survey_events`, called by ``POST /v1/events`` after
the recorder took the batch): ``survey_shown`` events, whatever channel sent them (the web kit, an
app, an email sender that posts it when the email goes out), and the watched ``task`` / ``purchase``
events — one pipelined round trip, and none for a batch without such events. Idempotent for a
retried event (same ``ts``): a showing is counted once per distinct time. Only events with
analytics consent are noted (the others are stored nowhere).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from personalization.decision.surveys import SurveyState, parse_state
from personalization.measurement.events import Event, Purchase, SurveyShown, Task
from personalization.store.keys import survey_state_key
from personalization.store.profiles import PROFILE_TTL_S

__all__ = ["SURVEY_EVENT_TYPES", "load_state", "note_survey_events", "read_state"]

#: Raw event types that can change a survey state (others are not even decoded).
SURVEY_EVENT_TYPES = frozenset({"survey_shown", "task", "purchase"})

#: The state update (KEYS/ARGV in its header); its field prefixes are the decision module's.
_NOTE_LUA = (Path(__file__).parent / "scripts" / "survey_note.lua").read_text()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


async def read_state(redis: Redis, person_id: str) -> dict[str, str]:
    """The raw state hash of one person (one ``HGETALL``)."""
    raw = await redis.hgetall(survey_state_key(person_id))
    return {_text(k): _text(v) for k, v in raw.items()}


async def load_state(redis: Redis, person_id: str) -> SurveyState:
    """The person's parsed :class:`~personalization.decision.surveys.SurveyState`."""
    return parse_state(await read_state(redis, person_id))


def _notes(event: Event, watched: frozenset[str], received_at: float) -> tuple[str, str, float] | None:
    ts = float(event.ts) if isinstance(event.ts, (int, float)) else received_at
    if isinstance(event, SurveyShown):
        return "s", event.survey, ts
    if isinstance(event, Task):
        label = f"task_{'success' if event.success else 'failure'}:{event.name}"
        return ("t", label, ts) if label in watched else None
    if isinstance(event, Purchase) and "purchase" in watched:
        return "t", "purchase", ts
    return None


async def note_survey_events(
    redis: Redis,
    raw_events: Iterable[object],
    watched: frozenset[str],
    *,
    ttl_s: int = PROFILE_TTL_S,
    received_at: float | None = None,
) -> int:
    """Stamp a batch's ``survey_shown`` events and watched triggers into each person's state.

    ``raw_events`` are the events as the API took them (``visitor_id`` already the person's); one
    that does not decode, or has no analytics consent, is skipped (the recorder reports it). Returns
    how many events were noted. Redis errors propagate: the caller decides (the events route logs
    them and answers anyway — the events themselves are recorded or spooled)."""
    now = time.time() if received_at is None else received_at
    by_person: dict[str, list[str | float]] = {}
    noted = 0
    for raw in raw_events:
        if not isinstance(raw, dict) or raw.get("type") not in SURVEY_EVENT_TYPES:
            continue
        if raw.get("type") != "survey_shown" and not watched:
            continue
        try:
            event = msgspec.convert(raw, Event)
        except msgspec.ValidationError:
            continue
        note = _notes(event, watched, now) if event.analytics else None
        if note is not None:
            by_person.setdefault(event.visitor_id, []).extend(note)
            noted += 1
    if not by_person:
        return 0
    script = redis.register_script(_NOTE_LUA)
    calls: Sequence[tuple[str, list[str | float]]] = list(by_person.items())
    if isinstance(redis, RedisCluster):  # its pipeline refuses scripts: one call per person
        for person, args in calls:
            await script(keys=[survey_state_key(person)], args=[ttl_s, *args])
        return noted
    async with redis.pipeline(transaction=False) as pipe:
        for person, args in calls:
            await script(keys=[survey_state_key(person)], args=[ttl_s, *args], client=pipe)
        await pipe.execute()
    return noted
