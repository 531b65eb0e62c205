"""Route handlers: parse, call one domain function, shape the response. No business logic here."""

from __future__ import annotations

import time
from typing import Annotated

from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException, ServiceUnavailableException
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.response import Response

from api.auth import requires_admin, requires_delivery
from api.runtime import Runtime
from api.schemas import (
    EventBatch,
    EventsAccepted,
    ExperienceInfo,
    ExperienceList,
    Health,
    PersonalizedEntry,
    PersonalizeRequest,
    PersonalizeResponse,
    Readiness,
)
from content import ContentSnapshot
from personalization.measurement import EventProblem, check_event
from personalization.service import Personalized
from personalization.types import Channel, Consent, Visitor

__all__ = ["DeliveryController", "AdminController", "health", "ready"]


def _runtime(state: State) -> Runtime:
    return state.runtime  # type: ignore[no-any-return]


def _snapshot(runtime: Runtime) -> ContentSnapshot:
    snapshot = runtime.content.snapshot
    if snapshot is None:
        raise ServiceUnavailableException(detail="content is not loaded yet; see /ready")
    return snapshot


def _shape(result: Personalized, snapshot: ContentSnapshot, locale: str) -> list[PersonalizedEntry]:
    return [
        PersonalizedEntry(
            entry_id=d.entry_id,
            content_type=snapshot.content_type_of(d.variant_entry_id),
            experience=d.experience,
            variant=d.variant,
            variant_entry_id=d.variant_entry_id,
            is_control=d.is_control,
            holdout=d.holdout,
            propensity=d.propensity,
            reason=d.reason,
            exposure_id=d.exposure_id,
            fields=snapshot.fields(d.variant_entry_id, locale),
        )
        for d in result.outcome.decisions
    ]


class DeliveryController(Controller):
    """Front-end routes (delivery key)."""

    path = "/v1"
    guards = [requires_delivery]
    tags = ["delivery"]

    @post("/personalize", status_code=200, summary="Personalized content for one visitor")
    async def personalize(self, data: JSONBody[PersonalizeRequest], state: State) -> PersonalizeResponse:
        """Decide a variant for each baseline entry and return its fields; one exposure per entry is logged."""
        runtime = _runtime(state)
        snapshot = _snapshot(runtime)
        unknown = [
            {"key": f"entries[{i}]", "message": f"no published entry with id {entry_id!r}"}
            for i, entry_id in enumerate(data.entries)
            if not snapshot.has_entry(entry_id)
        ]
        if unknown:
            raise NotFoundException(detail="unknown entry ids in the request", extra=unknown)
        locale = snapshot.locale_for(data.locale or data.visitor.locale)
        assert runtime.personalizer is not None
        result = await runtime.personalizer.personalize(data.visitor, data.entries, snapshot)
        return PersonalizeResponse(
            visitor_id=data.visitor.id,
            locale=locale,
            segments=result.outcome.segments,
            model_version=result.outcome.model_version,
            content_version=snapshot.version,
            degraded=result.degraded,
            entries=_shape(result, snapshot, locale),
        )

    @get("/entries/{entry_id:str}", summary="One personalized entry")
    async def entry(
        self,
        state: State,
        entry_id: Annotated[str, PathParameter(max_length=256)],
        visitor_id: Annotated[str, QueryParameter(min_length=1, max_length=256)],
        channel: Annotated[Channel, QueryParameter()] = "web",
        locale: Annotated[str | None, QueryParameter(max_length=35)] = None,
        session_id: Annotated[str | None, QueryParameter(max_length=256)] = None,
        country: Annotated[str | None, QueryParameter(pattern="^[A-Za-z]{2}$")] = None,
        device: Annotated[str | None, QueryParameter(max_length=64)] = None,
        consent_personalization: Annotated[bool, QueryParameter()] = True,
        consent_analytics: Annotated[bool, QueryParameter()] = True,
    ) -> PersonalizedEntry:
        """The same decision as ``POST /v1/personalize`` for a single entry, for clients that prefer GET."""
        runtime = _runtime(state)
        snapshot = _snapshot(runtime)
        if not snapshot.has_entry(entry_id):
            raise NotFoundException(detail=f"no published entry with id {entry_id!r}")
        visitor = Visitor(
            id=visitor_id,
            session_id=session_id,
            channel=channel,
            locale=locale,
            device=device,
            country=country,
            consent=Consent(personalization=consent_personalization, analytics=consent_analytics),
        )
        assert runtime.personalizer is not None
        result = await runtime.personalizer.personalize(visitor, [entry_id], snapshot)
        return _shape(result, snapshot, snapshot.locale_for(locale))[0]

    @post("/events", status_code=202, summary="Events from front ends")
    async def events(self, data: JSONBody[EventBatch], state: State) -> EventsAccepted:
        """Record events (profile counters + ``vary:events``); a retried ``event_id`` is not counted twice."""
        problems = []
        for i, event in enumerate(data.events):
            try:
                check_event(event)
            except EventProblem as exc:
                field, _, message = str(exc).partition(": ")
                problems.append({"key": f"events[{i}].{field}", "message": message})
        if problems:
            raise ClientException(detail="invalid events; nothing was recorded", extra=problems)
        runtime = _runtime(state)
        assert runtime.events is not None
        try:
            recorded = await runtime.events.record(data.events)
        except Exception as exc:
            raise ServiceUnavailableException(
                detail=f"events could not be stored ({type(exc).__name__}); retry with the same event_ids"
            ) from exc
        return EventsAccepted(accepted=recorded, duplicates=len(data.events) - recorded)


class AdminController(Controller):
    """Routes for marketers and developers (admin key)."""

    path = "/v1"
    guards = [requires_admin]
    tags = ["admin"]

    @get("/experiences", summary="Experiences in the served content")
    async def experiences(self, state: State) -> ExperienceList:
        snapshot = _snapshot(_runtime(state))
        baselines: dict[str, list[str]] = {key: [] for key in snapshot.experiences}
        for entry_id in snapshot.entries:
            for experience in snapshot.experiences_for(entry_id):
                baselines.setdefault(experience.key, []).append(entry_id)
        return ExperienceList(
            experiences=[
                ExperienceInfo(
                    key=e.key,
                    name=e.name,
                    type=e.type,
                    entries=sorted(baselines.get(e.key, [])),
                    variants=list(e.variants),
                    audience=e.audience.key if e.audience else None,
                    weights=list(e.weights),
                    traffic_allocation=e.traffic_allocation,
                    holdout=e.holdout,
                    goals=list(e.goals),
                    content_type=e.content_type,
                )
                for e in snapshot.experiences.values()
            ]
        )


@get("/health", tags=["operations"], summary="Liveness")
async def health() -> Health:
    return Health(status="ok")


@get("/ready", tags=["operations"], summary="Readiness: content, Redis and model")
async def ready(state: State) -> Response[Readiness]:
    runtime = _runtime(state)
    snapshot = runtime.content.snapshot
    redis_ok = await runtime.redis_ok()
    writer = runtime.exposures
    body = Readiness(
        ready=snapshot is not None and redis_ok,
        content=runtime.content.state,
        content_version=snapshot.version if snapshot else None,
        content_age_s=None if runtime.content.loaded_at is None else round(time.time() - runtime.content.loaded_at, 3),
        content_issues=len(snapshot.issues) if snapshot else 0,
        redis="ok" if redis_ok else "unreachable",
        model=runtime.model.version,
        exposures_pending=writer.pending if writer else 0,
        exposures_written=writer.written if writer else 0,
        exposures_dropped=writer.dropped if writer else 0,
    )
    return Response(body, status_code=200 if body.ready else 503)
