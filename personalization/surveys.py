"""Asking for the survey due now: the one Redis read, then the pure decision (issue 24).

What both routes call — ``POST /v1/personalize`` with ``"surveys": true`` (beside the entries, reusing
the profile the decision already read) and ``POST /v1/surveys/due`` (apps and email senders) — so the
two give the same answer for the same person. One ``HGETALL`` of the person's survey state
(:mod:`personalization.store.surveys`), and only when a survey is asked for and the space has any.

No survey (``None``) when: the space has none; the visitor did not consent to personalization and
analytics (the decision reads their profile; the answers and showings are stored); the profile
could not be read (``degraded``: the cap cannot be checked, and asking twice is worse than not
asking); or the state cannot be read within :data:`STATE_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from redis.asyncio import Redis

from personalization.decision.surveys import DueSurvey, due_survey
from personalization.seams import ProfileStore
from personalization.store.surveys import load_state
from personalization.types import (
    Decision,
    Profile,
    SurveyDefinition,
    SurveyText,
    Visitor,
)

__all__ = ["SCALES", "STATE_TIMEOUT_S", "person_of", "survey_due", "survey_due_alone", "survey_text"]

log = logging.getLogger("vary.surveys")

#: The answer scale of each metric, inclusive (SUS: per statement). Feedback has none.
SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7), "sus": (1, 5)}
STATE_TIMEOUT_S = 0.05


def person_of(visitor: Visitor, profile: Profile) -> str:
    """The id the person's state is kept under: a linked id's person (as events are recorded)."""
    person: str | None = getattr(profile, "person", None)
    return person or visitor.id


def survey_text(survey: SurveyDefinition, locale: str, default_locale: str) -> SurveyText:
    """The survey's words in ``locale`` (compiled for every space locale), else the default's."""
    return survey.texts.get(locale) or survey.texts[default_locale]


async def survey_due(
    redis: Redis,
    surveys: Mapping[str, SurveyDefinition],
    visitor: Visitor,
    profile: Profile,
    *,
    now: float,
    degraded: bool = False,
    decisions: list[Decision] | tuple[Decision, ...] = (),
) -> DueSurvey | None:
    """The survey due for this visitor now (see the module doc). ``decisions``: this request's, so a
    survey attached to an experience decided just now knows the variant before the assignment is
    stored."""
    if not surveys or degraded or not (visitor.consent.personalization and visitor.consent.analytics):
        return None
    person = person_of(visitor, profile)
    try:
        async with asyncio.timeout(STATE_TIMEOUT_S):
            state = await load_state(redis, person)
    except Exception as exc:  # timeout or Redis down: no survey rather than one past its cap
        log.warning("survey state read failed (%s): no survey asked", type(exc).__name__)
        return None
    variants = dict(profile.assignments)
    variants.update({d.experience: d.variant for d in decisions if d.experience is not None})
    return due_survey(
        surveys.values(), person_id=person, state=state, now=now, page=visitor.page,
        visits=profile.visits, variants=variants,
    )


async def survey_due_alone(
    redis: Redis, profiles: ProfileStore, surveys: Mapping[str, SurveyDefinition], visitor: Visitor, *, now: float
) -> DueSurvey | None:
    """The survey due without a content decision (``POST /v1/surveys/due``): the profile first (the
    person id, visits and sticky assignments), within :data:`STATE_TIMEOUT_S`, then the state."""
    if not surveys or not (visitor.consent.personalization and visitor.consent.analytics):
        return None
    try:
        async with asyncio.timeout(STATE_TIMEOUT_S):
            profile = await profiles.load(visitor.id)
    except Exception as exc:  # timeout or Redis down: no survey (the cap cannot be checked)
        log.warning("profile read failed (%s): no survey asked", type(exc).__name__)
        return None
    return await survey_due(redis, surveys, visitor, profile, now=now)

