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

**Written as the events are recorded**, in the same Lua call as the event's marker
(:class:`~personalization.measurement.recorder.EventRecorder`'s profile half, which prepends
``scripts/survey_note.lua``; :func:`survey_note` says what an event notes): ``survey_shown`` events,
whatever channel sent them (the web kit, an app, an email sender that posts it when the email goes
out), and the ``task`` / ``purchase`` events some survey waits for. So the state moves exactly when
the event is counted, and once: an event retried with its ``event_id``, or spooled while Redis was
unreachable and replayed later (perhaps twice, when a reply was lost), finds its marker and notes
nothing again. A showing resent without its ``event_id`` but with the same ``ts`` is not counted
again either. Only events with analytics consent are noted (the others are stored nowhere).
"""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from personalization.decision.surveys import SurveyState, parse_state
from personalization.measurement.events import Event, Purchase, SurveyShown, Task
from personalization.store.keys import survey_state_key

__all__ = ["SURVEY_NOTE_LUA", "load_state", "read_state", "survey_note"]

#: ``vary_survey_note(key, kind, name, ts, ttl)``, the state update, for the recorder's profile
#: script to prepend (its header says the fields; their prefixes are the decision module's).
SURVEY_NOTE_LUA = (Path(__file__).parent / "scripts" / "survey_note.lua").read_text()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


async def read_state(redis: Redis, person_id: str) -> dict[str, str]:
    """The raw state hash of one person (one ``HGETALL``)."""
    raw = await redis.hgetall(survey_state_key(person_id))
    return {_text(k): _text(v) for k, v in raw.items()}


async def load_state(redis: Redis, person_id: str) -> SurveyState:
    """The person's parsed :class:`~personalization.decision.surveys.SurveyState`."""
    return parse_state(await read_state(redis, person_id))


def survey_note(event: Event, watched: frozenset[str]) -> tuple[str, str] | None:
    """What ``event`` notes in its person's state: ``("s", <survey key>)`` for a showing,
    ``("t", <trigger label>)`` for a trigger some survey waits for (``watched``, e.g.
    ``task_success:checkout``, ``purchase``), else ``None`` (also without analytics consent)."""
    if not event.analytics:
        return None
    if isinstance(event, SurveyShown):
        return "s", event.survey
    if isinstance(event, Task):
        label = f"task_{'success' if event.success else 'failure'}:{event.name}"
        return ("t", label) if label in watched else None
    if isinstance(event, Purchase) and "purchase" in watched:
        return "t", "purchase"
    return None
