"""Which survey is due for one person now (issue 24). Pure: no I/O.

Inputs are what the request already knows (the visitor, their profile, the variants just decided)
plus the person's survey state (:class:`SurveyState`, one small Redis hash read by
:mod:`personalization.store.surveys`). A survey is **due** when, in this order:

1. **the trigger fired** — ``task_success:<task>`` / ``task_failure:<task>`` / ``purchase``: such an
   event arrived within :data:`TRIGGER_FRESH_S` and after this survey was last shown to the person
   (the event path stamps it into the state, so one occurrence asks once); ``page:<p>``: the
   request's page (its path, or an app's screen name) is ``p`` (or starts with it when ``p`` ends in
   ``*``); ``visits:<n>``: the person has made at least ``n`` visits; ``exit_intent``: always — the
   front end holds the prompt and shows it only when the person moves to leave;
2. **attached experience** — a survey attached to an experience is only for people in it (served a
   variant now or before: a sticky assignment), so every answer is tied to the variant seen;
3. **the cap** — nobody shown *any* survey, on any channel, within the survey's ``cap_days``; and at
   most ``max_per_person`` showings of this one;
4. **the sample** — ``bucket_hash("vary-survey:<key>", person id)`` < ``sampling_rate``: GrowthBook's
   v2 hash, as experiences bucket, seeded per survey so the samples of two surveys are independent
   and a person in or out of one sample stays so on every channel and request.

Of several due surveys the one whose trigger kind comes first in
:data:`~personalization.types.SURVEY_TRIGGERS` wins (the moment after a task or order passes; a
visit count does not), then the key, so the choice is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from msgspec import Struct

from personalization.decision.bucketing import bucket_hash
from personalization.types import SURVEY_TRIGGERS, SurveyDefinition, SurveyTrigger

__all__ = [
    "DAY_S",
    "TRIGGER_FRESH_S",
    "DueSurvey",
    "SurveyState",
    "due_survey",
    "in_sample",
    "page_matches",
    "parse_state",
    "watched_triggers",
]

DAY_S = 86_400.0
#: How long after a task or an order its survey may still be asked: the moment has passed after that.
TRIGGER_FRESH_S = DAY_S
#: Hash-field prefixes of the survey state (:mod:`personalization.store.surveys` writes them).
LAST_SHOWN = "last"
SHOWN_AT = "s:"
SHOWN_COUNT = "n:"
TRIGGERED_AT = "t:"
_RANK = {kind: rank for rank, kind in enumerate(SURVEY_TRIGGERS)}
_EVENT_TRIGGERS = frozenset({"task_success", "task_failure", "purchase"})


class SurveyState(Struct, frozen=True, kw_only=True):
    """What Vary remembers of one person's surveys: when any survey was last shown (the cap), when
    and how often each was shown, and when each watched trigger last fired (label → epoch s)."""

    last_shown: float | None = None
    shown_at: dict[str, float] = {}
    shown: dict[str, int] = {}
    triggered_at: dict[str, float] = {}


class DueSurvey(Struct, frozen=True, kw_only=True):
    """The survey to ask now, why (the trigger's label), and the variant of its experience the
    person was served (``None`` when it is attached to none)."""

    survey: SurveyDefinition
    trigger: str
    experience: str | None = None
    variant: int | None = None


def parse_state(raw: Mapping[str, str]) -> SurveyState:
    """The stored hash as a :class:`SurveyState`; a field that does not parse is ignored."""
    last: float | None = None
    shown_at: dict[str, float] = {}
    shown: dict[str, int] = {}
    triggered: dict[str, float] = {}
    for field, value in raw.items():
        try:
            if field == LAST_SHOWN:
                last = float(value)
            elif field.startswith(SHOWN_AT):
                shown_at[field[len(SHOWN_AT):]] = float(value)
            elif field.startswith(SHOWN_COUNT):
                shown[field[len(SHOWN_COUNT):]] = int(value)
            elif field.startswith(TRIGGERED_AT):
                triggered[field[len(TRIGGERED_AT):]] = float(value)
        except ValueError:
            continue
    return SurveyState(last_shown=last, shown_at=shown_at, shown=shown, triggered_at=triggered)


def watched_triggers(surveys: Iterable[SurveyDefinition]) -> frozenset[str]:
    """The event triggers some survey waits for (``task_success:checkout``, ``purchase``): only these
    are stamped into a person's state, which keeps it as small as the space's surveys."""
    return frozenset(s.trigger.label for s in surveys if s.trigger.kind in _EVENT_TRIGGERS)


def in_sample(person_id: str, survey_key: str, rate: float) -> bool:
    """Whether the person is in the survey's sample: deterministic, independent per survey."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    share = bucket_hash(f"vary-survey:{survey_key}", person_id, 2)
    return share is not None and share < rate


def page_matches(pattern: str, page: str | None) -> bool:
    """Whether the request's page is the trigger's: its path (or an app's screen name) equals the
    pattern, or starts with it when the pattern ends in ``*``."""
    if not page:
        return False
    where = page
    if "://" in page or page.startswith("/"):
        where = urlsplit(page).path or "/"
    if pattern.endswith("*"):
        return where.startswith(pattern[:-1])
    return where == pattern or (len(where) > 1 and where.rstrip("/") == pattern.rstrip("/"))


def _fired(trigger: SurveyTrigger, survey_key: str, state: SurveyState, *, page: str | None, visits: int,
           now: float) -> bool:
    if trigger.kind in _EVENT_TRIGGERS:
        at = state.triggered_at.get(trigger.label)
        return at is not None and now - at <= TRIGGER_FRESH_S and at > state.shown_at.get(survey_key, -1.0)
    if trigger.kind == "page":
        return page_matches(trigger.detail or "", page)
    if trigger.kind == "visits":
        return visits >= int(trigger.detail or "1")
    return trigger.kind == "exit_intent"


def due_survey(
    surveys: Iterable[SurveyDefinition],
    *,
    person_id: str,
    state: SurveyState,
    now: float,
    page: str | None = None,
    visits: int = 0,
    variants: Mapping[str, int] | None = None,
) -> DueSurvey | None:
    """The survey due for this person now, or ``None`` (see the module doc). ``variants``: the
    variant of each experience the person is in (this request's decisions over their sticky
    assignments)."""
    variants = variants or {}
    best: tuple[int, str, DueSurvey] | None = None
    for survey in surveys:
        if not _fired(survey.trigger, survey.key, state, page=page, visits=visits, now=now):
            continue
        variant = None
        if survey.experience is not None:
            variant = variants.get(survey.experience)
            if variant is None:
                continue
        if state.last_shown is not None and now - state.last_shown < survey.cap_days * DAY_S:
            continue
        if survey.max_per_person is not None and state.shown.get(survey.key, 0) >= survey.max_per_person:
            continue
        if not in_sample(person_id, survey.key, survey.sampling_rate):
            continue
        rank = (_RANK[survey.trigger.kind], survey.key)
        if best is None or rank < best[:2]:
            due = DueSurvey(survey=survey, trigger=survey.trigger.label, experience=survey.experience,
                            variant=variant)
            best = (*rank, due)
    return best[2] if best is not None else None
