"""Survey routes (issue 24): the survey due for a person, a survey's results, and email answer links.

* ``POST /v1/surveys/due`` (delivery key) — the same decision ``POST /v1/personalize`` makes with
  ``"surveys": true``, without entries: for mobile apps and email senders. Body
  ``{"visitor": {...}, "locale": "de-DE"}``; answer ``{"survey": SurveyPrompt | null}``.
* ``GET /v1/surveys/{key}/results`` (admin key) — response rates per variant and channel, the CX
  figure with its response rate, the response-rate flag, feedback by problem tag
  (:mod:`personalization.measurement.surveys`).
* ``GET /v1/surveys/{key}/answer`` (no key: the link is signed) — what an email's score buttons link
  to. ``visitor_id``, ``score`` (or ``text`` for feedback), ``token``: ``<expires>.<hex HMAC-SHA256>``
  of ``survey:<key>:<visitor_id>`` with ``VARY_IDENTITY_SECRET`` (the identity token's scheme,
  :func:`~personalization.store.identity.sign_identity`), so a link cannot be forged for another
  person or survey. It records the same ``survey`` (``feedback``) event the kit posts, channel
  ``email``. One signature serves every score button of one email.

The decisions live in :mod:`personalization.surveys`; this module only shapes requests and answers.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from litestar import Controller, Request
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter
from msgspec import Meta, Struct

from api.http.auth import requires_admin, requires_delivery
from api.http.common import loaded_snapshot, runtime_of
from api.http.handlers import get, post
from api.http.schemas import ErrorBody, Locale, SurveyPrompt
from api.runtime import Runtime
from content import ContentSnapshot
from personalization.decision.surveys import DueSurvey
from personalization.errors import InvalidInput, NotFound, NotPermitted, Problem
from personalization.measurement.events import EVENT_STREAM
from personalization.measurement.surveys import SurveyResults, survey_report
from personalization.store.identity import IdentityRefused, verify_identity
from personalization.store.partitions import all_streams
from personalization.surveys import (
    SCALES,
    survey_due,
    survey_due_alone,
    survey_text,
)
from personalization.types import Decision, Profile, Visitor

__all__ = ["SurveyController", "SurveyLinkController", "SurveyResultsController", "due_prompt", "survey_token_subject"]


class SurveysDueRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/surveys/due``: the visitor context of ``POST /v1/personalize``, without entries."""

    visitor: Annotated[Visitor, Meta(description="Who is asking: the visitor's id and request-time context.")]
    locale: (
        Annotated[
            Locale,
            Meta(
                description="The locale to word the survey in (BCP 47, `en-US`; `_` accepted for `-`); null: the "
                "visitor's locale, else the space's default."
            ),
        ]
        | None
    ) = None


class SurveysDue(Struct, frozen=True, kw_only=True):
    """The answer of ``POST /v1/surveys/due``."""

    survey: (
        Annotated[SurveyPrompt, Meta(description="The survey to show this person now; null: none is due.")] | None
    )


class SurveyAnswered(Struct, frozen=True, kw_only=True):
    """The answer of an email survey link."""

    recorded: Annotated[bool, Meta(description="Whether the answer was recorded (always true in a 200 answer).")]
    survey: Annotated[str, Meta(description="The key of the survey answered.")]
    message: Annotated[str, Meta(description="A thank-you to show the person who followed the link.")]


def survey_token_subject(key: str, visitor_id: str) -> str:
    """What an email answer link's token signs: one person, one survey."""
    return f"survey:{key}:{visitor_id}"


def prompt_of(due: DueSurvey, snapshot: ContentSnapshot, locale: str, touchpoint: str | None) -> SurveyPrompt:
    """A due survey in the API's shape, in the served locale."""
    survey = due.survey
    words = survey_text(survey, locale, snapshot.default_locale)
    low, high = SCALES.get(survey.metric, (None, None))
    return SurveyPrompt(
        key=survey.key, entry_id=survey.id, metric=survey.metric, question=words.question, locale=locale,
        scale_min=low, scale_max=high, low_label=words.low_label, high_label=words.high_label,
        items=list(words.items), problem_tags=list(survey.problem_tags), experience_key=due.experience,
        variant=due.variant, touchpoint=touchpoint, trigger=due.trigger,
    )


def _touchpoint(due: DueSurvey) -> str | None:
    """Where the survey is asked: the task or the page its trigger names (else unknown)."""
    trigger = due.survey.trigger
    return trigger.detail if trigger.kind in ("task_success", "task_failure", "page") else None


async def due_prompt(
    runtime: Runtime,
    snapshot: ContentSnapshot,
    visitor: Visitor,
    profile: Profile,
    locale: str,
    *,
    degraded: bool = False,
    decisions: list[Decision] | tuple[Decision, ...] = (),
) -> SurveyPrompt | None:
    """The survey due for the visitor as a prompt, or ``None`` (:func:`personalization.surveys.survey_due`)."""
    if not snapshot.surveys:
        return None
    due = await survey_due(runtime.redis, snapshot.surveys, visitor, profile, now=time.time(),
                           degraded=degraded, decisions=decisions)
    return prompt_of(due, snapshot, locale, _touchpoint(due)) if due is not None else None


class SurveyController(Controller):
    """Due surveys (delivery key)."""

    path = "/v1/surveys"
    guards = [requires_delivery]
    tags = ["delivery"]

    @post("/due", status_code=200, summary="The survey due for a person now", operation_id="surveysDue")
    async def due(self, data: JSONBody[SurveysDueRequest], state: State) -> SurveysDue:
        """The survey due for this visitor now (trigger fired, in the sample, under the cap across
        every channel), or ``null``. Show it, then post ``survey_shown`` and the answer (``survey`` /
        ``feedback``) or ``survey_dismissed`` to ``POST /v1/events`` with ``survey`` set to its key."""
        runtime = runtime_of(state)
        snapshot = loaded_snapshot(runtime)
        locale = snapshot.locale_for(data.locale or data.visitor.locale)
        assert runtime.profiles is not None
        due = await survey_due_alone(runtime.redis, runtime.profiles, snapshot.surveys, data.visitor, now=time.time())
        return SurveysDue(survey=prompt_of(due, snapshot, locale, _touchpoint(due)) if due is not None else None)


class SurveyResultsController(Controller):
    """Survey results (admin key)."""

    path = "/v1/surveys"
    guards = [requires_admin]
    tags = ["admin"]

    @get("/{key:str}/results", summary="A survey's response rates, CX figures and feedback")
    async def results(self, state: State, key: Annotated[str, PathParameter(max_length=256)]) -> SurveyResults:
        """Response rate per variant and channel (shown, answered, dismissed), the CX figure of each
        arm with its response rate, ``response_rate_differs`` when a variant changes who answers, and
        free-text feedback grouped by problem tag."""
        runtime = runtime_of(state)
        survey = loaded_snapshot(runtime).surveys.get(key)
        if survey is None:
            raise NotFound(f"no survey with key {key!r} in the served content")
        streams = all_streams(EVENT_STREAM, runtime.settings.stream_partitions)
        return await survey_report(runtime.redis, streams, survey)


class SurveyLinkController(Controller):
    """Answer links in emails: signed per person and survey, so no API key is needed."""

    path = "/v1/surveys"
    tags = ["delivery"]

    @get(
        "/{key:str}/answer",
        summary="Record an answer from an email survey link",
        responses={
            403: ResponseSpec(ErrorBody, description="The token does not sign this survey and person, or expired",
                              generate_examples=False),
            404: ResponseSpec(ErrorBody, description="No survey with that key", generate_examples=False),
            503: ResponseSpec(ErrorBody, description="Redis unavailable and the spool full: retry later",
                              generate_examples=False),
        },
    )
    async def answer(
        self,
        state: State,
        request: Request[Any, Any, Any],
        key: Annotated[str, PathParameter(max_length=256)],
        visitor_id: Annotated[str, QueryParameter(min_length=1, max_length=256)],
        token: Annotated[str, QueryParameter(min_length=1, max_length=200)],
        score: Annotated[float | None, QueryParameter(ge=0, le=100)] = None,
        text: Annotated[str | None, QueryParameter(max_length=4000)] = None,
        problem: Annotated[str | None, QueryParameter(max_length=256)] = None,
    ) -> SurveyAnswered:
        """Record the answer an email link carries as a ``survey`` (or ``feedback``) event, channel
        ``email``. 403 when the token does not sign this survey and person or has expired."""
        runtime = runtime_of(state)
        survey = loaded_snapshot(runtime).surveys.get(key)
        if survey is None:
            raise NotFound(f"no survey with key {key!r} in the served content")
        try:
            verify_identity(runtime.settings.identity_secret, survey_token_subject(key, visitor_id), token, time.time())
        except IdentityRefused as exc:
            raise NotPermitted(f"token: {exc.detail}") from exc
        event: dict[str, Any] = {"visitor_id": visitor_id, "channel": "email", "survey": key}
        if survey.metric == "feedback":
            if not text:
                raise InvalidInput("a feedback answer needs text", problems=[Problem("text", "required")])
            event.update(type="feedback", text=text, **({"problem": problem} if problem else {}))
        else:
            if score is None:
                raise InvalidInput(f"a {survey.metric} answer needs a score", problems=[Problem("score", "required")])
            event.update(type="survey", metric=survey.metric, score=score)
        assert runtime.events is not None
        taken = await runtime.events.accept([event])
        if taken.rejected:
            problem_ = taken.rejected[0]
            raise InvalidInput(problem_.message, problems=[Problem(problem_.field, problem_.message)])
        return SurveyAnswered(recorded=True, survey=key, message="Thank you: your answer was recorded.")
