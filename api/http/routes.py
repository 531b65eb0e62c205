"""Route handlers: parse, call one domain function, shape the response. No business logic here."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Annotated

import msgspec
from litestar import Controller, Request
from litestar.datastructures import State
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter
from litestar.response import Response

from api.http.auth import key_scope, requires_admin, requires_delivery
from api.frontend.exposures import with_exposure_tokens
from api.http.handlers import get, post
from api.runtime import Runtime
from api.http.schemas import (
    ContentIssueInfo,
    ContentIssueList,
    ContentSyncInfo,
    EventBatch,
    EventsAccepted,
    ExperienceInfo,
    ExperienceList,
    Health,
    PersonalizedEntry,
    PersonalizeRequest,
    PersonalizeResponse,
    Readiness,
    RejectedEvent,
    WebhookAccepted,
)
from content import ContentSnapshot
from content.errors import ContentSourceError
from content.segments import unknown_segment_issues
from content.webhooks import (
    WebhookPayloadError,
    WebhookSignatureError,
    is_content_change,
    parse_webhook,
    verify_request,
)
from personalization.decision.context import merge_values
from personalization.measurement.cx import Breakdown, CxReport, journey_metrics, parse_period
from personalization.measurement.events import decode_events
from personalization.measurement.journeys import DEFAULT_PERIOD_S, JourneyMap, journey_map
from personalization.measurement.recorder import (
    EventProblem,
    EventSpoolFull,
    EventsRecorded,
    check_event,
)
from personalization.measurement.results import ExperimentResults, experiment_results
from personalization.service import Personalized
from personalization.types import Channel, Consent, Visitor

__all__ = ["DeliveryController", "AdminController", "contentful_webhook", "health", "ready"]

#: ``Retry-After`` of a 503 for events when Redis is unreachable and the events spool is full.
EVENTS_RETRY_AFTER_S = 30


def runtime_of(state: State) -> Runtime:
    """The worker's :class:`Runtime` (set up in the app's lifespan); every route module uses this."""
    return state.runtime  # type: ignore[no-any-return]


def loaded_snapshot(runtime: Runtime) -> ContentSnapshot:
    """The published snapshot being served, or 503 while content has not loaded yet."""
    snapshot = runtime.snapshot
    if snapshot is None:
        raise ServiceUnavailableException(detail="content is not loaded yet; see /ready")
    return snapshot


async def _serving_snapshot(runtime: Runtime, request: Request, preview: bool) -> ContentSnapshot:
    """The published snapshot, or for ``preview=true`` (admin keys only) the drafts."""
    if not preview:
        return loaded_snapshot(runtime)
    if key_scope(request) != "admin":
        raise PermissionDeniedException(detail="preview=true needs an admin key; a delivery key was sent")
    if runtime.preview is None:
        raise ClientException(
            detail="preview needs VARY_CONTENT_SOURCE=contentful and VARY_CONTENTFUL_PREVIEW_TOKEN"
        )
    try:
        return await runtime.preview_snapshot()
    except ContentSourceError as exc:
        raise HTTPException(status_code=502, detail=f"Contentful Preview API failed: {exc}") from exc


def _shape(result: Personalized, snapshot: ContentSnapshot, locale: str) -> list[PersonalizedEntry]:
    # Merge tags are filled from the visitor; a hidden variant ("" id) renders nothing.
    values = merge_values(result.outcome.visitor) if snapshot.has_merge_tags else None
    return [
        PersonalizedEntry(
            entry_id=d.entry_id,
            content_type=snapshot.content_type_of(d.variant_entry_id or d.entry_id),
            experience=d.experience,
            variant=d.variant,
            variant_entry_id=d.variant_entry_id,
            is_control=d.is_control,
            holdout=d.holdout,
            propensity=d.propensity,
            reason=d.reason,
            exposure_id=d.exposure_id,
            fields=snapshot.fields(d.variant_entry_id, locale, values) if d.variant_entry_id else None,
            hidden=not d.variant_entry_id,
        )
        for d in result.outcome.decisions
    ]


class DeliveryController(Controller):
    """Front-end routes (delivery key)."""

    path = "/v1"
    guards = [requires_delivery]
    tags = ["delivery"]

    @post("/personalize", status_code=200, summary="Personalized content for one visitor", operation_id="personalize")
    async def personalize(
        self, data: JSONBody[PersonalizeRequest], state: State, request: Request
    ) -> PersonalizeResponse:
        """Decide a variant for each baseline entry and return its fields; one exposure per entry is
        logged — or, with ``"exposures": "on_view"``, handed out as ``exposure_token``s for
        ``POST /v1/exposures``. ``preview=true`` (admin key) decides over drafts and logs nothing."""
        runtime = runtime_of(state)
        snapshot = await _serving_snapshot(runtime, request, data.preview)
        unknown = [
            {"key": f"entries[{i}]", "message": f"no published entry with id {entry_id!r}"}
            for i, entry_id in enumerate(data.entries)
            if not snapshot.has_entry(entry_id)
        ]
        if unknown:
            raise NotFoundException(detail="unknown entry ids in the request", extra=unknown)
        locale = snapshot.locale_for(data.locale or data.visitor.locale)
        assert runtime.personalizer is not None
        on_view = data.exposures == "on_view" and not data.preview
        result = await runtime.personalizer.personalize(
            data.visitor, data.entries, snapshot, record=not data.preview, defer_exposures=on_view
        )
        entries = _shape(result, snapshot, locale)
        if on_view:
            entries = with_exposure_tokens(entries, result.outcome.exposures, state.exposure_tokens, time.time())
        return PersonalizeResponse(
            visitor_id=data.visitor.id,
            locale=locale,
            segments=result.outcome.segments,
            model_version=result.outcome.model_version,
            content_version=snapshot.version,
            degraded=result.degraded,
            entries=entries,
        )

    @get("/entries/{entry_id:str}", summary="One personalized entry")
    async def entry(
        self,
        state: State,
        request: Request,
        entry_id: Annotated[str, PathParameter(max_length=256)],
        visitor_id: Annotated[str, QueryParameter(min_length=1, max_length=256)],
        channel: Annotated[Channel, QueryParameter()] = "web",
        locale: Annotated[str | None, QueryParameter(max_length=35)] = None,
        session_id: Annotated[str | None, QueryParameter(max_length=256)] = None,
        country: Annotated[str | None, QueryParameter(pattern="^[A-Za-z]{2}$")] = None,
        device: Annotated[str | None, QueryParameter(max_length=64)] = None,
        consent_personalization: Annotated[bool, QueryParameter()] = True,
        consent_analytics: Annotated[bool, QueryParameter()] = True,
        preview: Annotated[bool, QueryParameter()] = False,
    ) -> PersonalizedEntry:
        """The same decision as ``POST /v1/personalize`` for a single entry, for clients that prefer GET."""
        runtime = runtime_of(state)
        snapshot = await _serving_snapshot(runtime, request, preview)
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
        result = await runtime.personalizer.personalize(visitor, [entry_id], snapshot, record=not preview)
        return _shape(result, snapshot, snapshot.locale_for(locale))[0]

    @post("/events", status_code=202, summary="Events from front ends", operation_id="recordEvents")
    async def events(self, data: JSONBody[EventBatch], state: State) -> Response[EventsAccepted]:
        """Record events (profile counters + ``vary:events``). A bad event rejects only itself; a
        retried ``event_id`` is not counted twice; ``analytics: false`` events are not stored.
        202 when any event was taken (bad ones listed in ``rejected``); 400 with the standard error
        body (``extra`` naming each event and field) when every one was rejected. With Redis
        unreachable the events are spooled locally (``spooled``) and written once it returns; 503
        with ``Retry-After`` only when the spool is full too."""
        good, errors = decode_events(data.events)
        rejected = [RejectedEvent(index=e.index, field=e.field, message=e.message) for e in errors]
        keep = []
        dropped = 0
        for index, event in good:
            try:
                check_event(event)
            except EventProblem as exc:
                field, _, message = str(exc).partition(": ")
                rejected.append(RejectedEvent(index=index, field=field, message=message))
                continue
            if not event.analytics:
                dropped += 1
                continue
            keep.append(event)
        rejected.sort(key=lambda r: r.index)
        recorded = EventsRecorded()
        if keep:
            runtime = runtime_of(state)
            assert runtime.events is not None
            try:  # Redis unreachable: spooled and replayed later (``spooled``); spool full: 503
                recorded = await runtime.events.record_or_spool(keep)
            except EventSpoolFull as exc:
                raise ServiceUnavailableException(
                    detail=f"events could not be stored: Redis is unreachable and {exc}; retry with the same event_ids",
                    headers={"Retry-After": str(EVENTS_RETRY_AFTER_S)},
                ) from exc
            except Exception as exc:
                raise ServiceUnavailableException(
                    detail=f"events could not be stored ({type(exc).__name__}); retry with the same event_ids"
                ) from exc
        if not keep and not dropped:  # every event was bad: the standard error body, saying where
            raise ClientException(
                detail="every event in the batch was rejected; nothing was recorded",
                extra=[{"key": f"events[{r.index}].{r.field}", "message": r.message} for r in rejected],
            )
        body = EventsAccepted(
            accepted=recorded.accepted,
            duplicates=recorded.duplicates,
            spooled=recorded.spooled,
            dropped=dropped,
            rejected=rejected,
        )
        return Response(body, status_code=202)


class AdminController(Controller):
    """Routes for marketers and developers (admin key)."""

    path = "/v1"
    guards = [requires_admin]
    tags = ["admin"]

    @get("/experiences", summary="Experiences in the served content")
    async def experiences(self, state: State) -> ExperienceList:
        snapshot = loaded_snapshot(runtime_of(state))
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


    @get(
        "/experiences/{key:str}/results",
        summary="Experiment results: goals, UX and CX per variant",
        responses={200: ResponseSpec(ExperimentResults, description="Results", generate_examples=False)},
    )
    async def results(self, state: State, key: FromPath[str]) -> Response[bytes]:
        """Per goal: exposures, conversions, rate with Wilson interval, uplift with interval, p-value,
        chance to beat control; the sample-ratio-mismatch check; breakdowns; UX per touchpoint; CX."""
        runtime = runtime_of(state)
        experience = loaded_snapshot(runtime).experiences.get(key)
        if experience is None:
            raise NotFoundException(detail=f"no experience with key {key!r} in the served content")
        results = await experiment_results(runtime.redis, experience)
        return Response(msgspec.json.encode(results), media_type="application/json")

    @get(
        "/journeys/{key:str}",
        summary="Customer journey map: reach, drop-off, time, UX, CX, paths",
        responses={200: ResponseSpec(JourneyMap, description="Journey map", generate_examples=False)},
    )
    async def journey(
        self,
        state: State,
        key: FromPath[str],
        experience: Annotated[str | None, QueryParameter(max_length=256)] = None,
        since: Annotated[str | None, QueryParameter(max_length=64)] = None,
        until: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> Response[bytes]:
        """Per stage of the journey: visitors reaching it, drop-off to the next, median time between
        stages, UX of its touchpoints, CX scores and channels; plus the most common paths. Per variant
        of ``experience`` when given. ``since``/``until``: ISO dates or times (UTC unless an offset is
        given; a bare ``until`` date includes that day), default the last 30 days."""
        runtime = runtime_of(state)
        snapshot = loaded_snapshot(runtime)
        journey = snapshot.journeys.get(key)
        if journey is None:
            raise NotFoundException(detail=f"no journey with key {key!r} in the served content")
        chosen = None
        if experience is not None:
            chosen = snapshot.experiences.get(experience)
            if chosen is None:
                raise NotFoundException(detail=f"no experience with key {experience!r} in the served content")
        until_ts = _iso_ts(until, "until", end_of_day=True)
        until_ts = time.time() if until_ts is None else until_ts
        since_ts = _iso_ts(since, "since", end_of_day=False)
        since_ts = until_ts - DEFAULT_PERIOD_S if since_ts is None else since_ts
        if since_ts >= until_ts:
            raise ClientException(detail="since must be before until (which defaults to now)")
        result = await journey_map(
            runtime.redis, journey, experience=chosen, since_ts=since_ts, until_ts=until_ts,
            partitions=runtime.settings.stream_partitions,
        )
        return Response(msgspec.json.encode(result), media_type="application/json")

    @get("/cx", summary="Journey metrics across channels: NPS, CSAT, CES, retention, repeat purchase, switching")
    async def cx(
        self,
        state: State,
        since: Annotated[
            str | None, QueryParameter(max_length=64, description="First day, ISO date (UTC); its ISO week counts")
        ] = None,
        until: Annotated[
            str | None, QueryParameter(max_length=64, description="Last day, ISO date (UTC); its ISO week counts")
        ] = None,
        by: Annotated[Breakdown, QueryParameter(description="Breakdowns: all, channel or segment")] = "all",
    ) -> CxReport:
        """NPS, CSAT (percent), CES, repeat-purchase rate, retention by weekly cohort and channel
        switching over the ISO weeks of ``since`` … ``until`` (default: every week with data), with the
        survey and purchase metrics by channel and by segment. A bad date, or since after until: 400."""
        try:
            start, end = parse_period(since, until)
        except ValueError as exc:
            raise ClientException(detail=str(exc)) from None
        return await journey_metrics(runtime_of(state).redis, since=start, until=end, by=by)

    @get("/content/issues", summary="Mis-modelled experiences and audiences, with fixes")
    async def content_issues(self, state: State) -> ContentIssueList:
        runtime = runtime_of(state)
        snapshot = loaded_snapshot(runtime)
        model = runtime.model.current
        segment_issues = unknown_segment_issues(snapshot, model.segments if model else ())
        return ContentIssueList(
            content_version=snapshot.version,
            issues=[
                ContentIssueInfo(
                    entry_id=i.entry_id, content_type=i.content_type, problem=i.problem, fix=i.fix
                )
                for i in (*snapshot.issues, *segment_issues)
            ],
        )


def _iso_ts(value: str | None, name: str, *, end_of_day: bool) -> float | None:
    """An ISO 8601 date or date-time query parameter as Unix seconds (400 when unreadable).

    No offset means UTC; a bare date is its midnight, or with ``end_of_day`` the next midnight, so
    ``until=2025-06-30`` includes the 30th.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ClientException(
            detail=f"{name} must be an ISO 8601 date or time, e.g. 2025-06-01 or 2025-06-01T12:00:00Z; "
            f"got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    if end_of_day and len(text) <= 10:  # a date alone: YYYY-MM-DD or YYYYMMDD
        parsed += timedelta(days=1)
    return parsed.timestamp()


@post("/v1/webhooks/contentful", status_code=200, tags=["contentful"], summary="Contentful webhook")
async def contentful_webhook(request: Request, state: State) -> WebhookAccepted:
    """Verify Contentful's request signature, then sync at once and tell every other worker.

    Unsigned, badly signed or expired requests get 401 and change nothing.
    """
    runtime = runtime_of(state)
    secret = runtime.settings.contentful_webhook_secret
    if not secret:
        raise NotAuthorizedException(detail="webhooks are off: set VARY_CONTENTFUL_WEBHOOK_SECRET")
    body = await request.body()
    path = request.scope["raw_path"].decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    try:
        verify_request(
            secret, request.method, path + (f"?{query}" if query else ""), dict(request.headers), body,
            now_ms=int(time.time() * 1000),
        )
    except WebhookSignatureError as exc:
        raise NotAuthorizedException(detail=f"webhook refused: {exc}") from exc
    try:
        event = parse_webhook(request.headers.get("x-contentful-topic"), body)
    except WebhookPayloadError as exc:
        raise ClientException(detail=f"webhook payload: {exc}") from exc
    synced = is_content_change(event)
    if synced and runtime.preview is not None:
        runtime.preview.invalidate()
    version = await runtime.content.sync_now(reason=f"webhook {event.topic}") if synced else runtime.content.state.version
    return WebhookAccepted(topic=event.topic, entity_id=event.entity_id, synced=synced, content_version=version)


@get("/health", tags=["operations"], summary="Liveness")
async def health() -> Health:
    return Health(status="ok")


@get("/ready", tags=["operations"], summary="Readiness: content, Redis and model")
async def ready(state: State) -> Response[Readiness]:
    runtime = runtime_of(state)
    content = runtime.content.state
    snapshot = content.snapshot
    redis_ok = await runtime.redis_ok()
    writer = runtime.exposures
    body = Readiness(
        ready=snapshot is not None and redis_ok,
        content=content.state,
        content_version=snapshot.version if snapshot else None,
        content_age_s=None if content.loaded_at is None else round(time.time() - content.loaded_at, 3),
        content_issues=len(snapshot.issues) if snapshot else 0,
        content_sync=ContentSyncInfo(
            source=repr(runtime.content.source),
            syncs=content.syncs,
            failed_syncs=content.failed_syncs,
            last_sync_at=content.last_sync_at,
            last_sync_changes=content.last_sync_changes,
            last_error=content.error,
        ),
        redis="ok" if redis_ok else "unreachable",
        model=runtime.model.version,
        exposures_pending=writer.pending if writer else 0,
        exposures_written=writer.written if writer else 0,
        exposures_dropped=writer.dropped if writer else 0,
        exposures_spooled=writer.spooled if writer else 0,
        exposures_replayed=writer.replayed if writer else 0,
        spool_bytes=writer.spool_bytes if writer else 0,
        events_spooled=runtime.events.spooled if runtime.events else 0,
        events_replayed=runtime.events.replayed if runtime.events else 0,
        events_spool_depth=runtime.events.waiting if runtime.events else 0,
        events_spool_bytes=runtime.events.spool_bytes if runtime.events else 0,
        journal_bytes=writer.journal_bytes if writer else 0,
        decisions_degraded=runtime.personalizer.profile_failures if runtime.personalizer else 0,
        profile_breaker_open=runtime.profiles.breaker_open if runtime.profiles else False,
    )
    return Response(body, status_code=200 if body.ready else 503)
