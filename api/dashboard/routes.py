"""Dashboard pages: server-rendered, over the same functions the JSON admin API calls.

Who may see them is :mod:`api.dashboard.guards`; the sign-in form is :mod:`api.dashboard.sign_in`.
Handlers call one domain function each (results, CX, journey map, model registry, evaluation, the
decision itself for "preview as") and hand the answer to :mod:`api.dashboard.pages` for display.
Errors are drawn as the error page, mapped from the domain as in the API (:mod:`api.http.errors`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import anyio.to_thread
from litestar import Controller, Request, Router
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.params import FromPath, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Response, Template
from litestar.static_files import create_static_files_router

from api.dashboard import pages
from api.dashboard.guards import (
    SignInRequired,
    check_origin,
    requires_dashboard,
    safe_next,
)
from api.dashboard.journey_page import journey_view
from api.dashboard.model_page import evaluation_view, model_view, policy_extras
from api.dashboard.preview import (
    PreviewError,
    parse_scores,
    parse_traits,
    preview_decision,
    preview_visitor,
)
from api.dashboard.sign_in import SignInController, page
from api.dashboard.survey_page import experience_surveys_view, survey_row, survey_view
from api.http.common import experience_in, loaded_snapshot, runtime_of
from api.http.errors import exception_handlers
from api.http.handlers import get, post
from api.http.measurement import journey_report
from personalization.errors import NotFound
from personalization.measurement.cx import journey_metrics, weekly_metrics
from personalization.measurement.events import EVENT_STREAM
from personalization.measurement.guardrail_monitor import live_pauses
from personalization.measurement.results import experiment_results
from personalization.measurement.surveys import survey_report
from personalization.models.evaluation import (
    EvaluationError,
    NotAPolicyError,
    evaluate_served,
)
from personalization.models.files import ModelLoadError
from personalization.store.partitions import all_streams
from personalization.store.phases import list_phases
from personalization.types import CHANNELS

__all__ = ["STATIC", "TEMPLATES", "dashboard_router", "static_router"]

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
#: Bootstrap resamples the evaluate form may ask for (the JSON route allows the same).
MAX_BOOTSTRAP = 2000


@dataclass
class EvaluateForm:
    n_bootstrap: str = "200"


class DashboardController(Controller):
    path = "/"
    guards = [requires_dashboard]

    @get("/", summary="Experiences")
    async def experiences(self, request: Request, state: State) -> Template:
        runtime = runtime_of(state)
        snapshot = loaded_snapshot(runtime)
        now = time.time()
        experiences = list(snapshot.experiences.values())
        results = await asyncio.gather(*(experiment_results(runtime.redis, e) for e in experiences))
        paused = await live_pauses(runtime.redis, [e.key for e in experiences])
        rows = [pages.experience_row(e, r, now, paused.get(e.key)) for e, r in zip(experiences, results, strict=True)]
        return page(request, "experiences.html", "experiences", "Experiences", rows=rows)

    @get("/experiences/{key:str}", summary="One experience")
    async def experience(self, request: Request, state: State, key: FromPath[str]) -> Template:
        return await _experience_page(request, state, key, preview=None)

    @get("/experiences/{key:str}/preview", summary="Preview as a visitor")
    async def preview(
        self,
        request: Request,
        state: State,
        key: FromPath[str],
        visitor_id: Annotated[str, QueryParameter(max_length=256)] = "preview-visitor",
        country: Annotated[str, QueryParameter(max_length=8)] = "",
        channel: Annotated[str, QueryParameter(max_length=32)] = "web",
        device: Annotated[str, QueryParameter(max_length=64)] = "",
        traits: Annotated[str, QueryParameter(max_length=4096)] = "",
    ) -> Template:
        """The decision :func:`~personalization.decision.decide.decide` makes for this visitor, with the given
        segment scores (``segment.<name>`` fields) replacing the model's; nothing is recorded."""
        segment_fields = {
            name.removeprefix("segment."): value
            for name, value in request.query_params.items()
            if name.startswith("segment.")
        }
        form = {
            "visitor_id": visitor_id,
            "country": country,
            "channel": channel,
            "device": device,
            "traits": traits,
            "segments": segment_fields,
        }
        return await _experience_page(request, state, key, preview=form)

    @get("/ux", summary="UX and CX")
    async def ux(
        self,
        request: Request,
        state: State,
        experience: Annotated[str | None, QueryParameter(max_length=256)] = None,
    ) -> Template:
        runtime = runtime_of(state)
        snapshot = loaded_snapshot(runtime)
        keys = list(snapshot.experiences)
        chosen_key = experience or (keys[0] if keys else None)
        chosen = experience_in(snapshot, chosen_key) if chosen_key else None
        results = await experiment_results(runtime.redis, chosen) if chosen else None
        # One tile per touchpoint (visitors name touchpoints): built in a worker thread, off the event loop.
        tiles = await anyio.to_thread.run_sync(pages.ux_tiles, results) if results is not None else []
        overall = await journey_metrics(runtime.redis, since=None, until=None, by="channel")
        weekly = await weekly_metrics(runtime.redis, overall.period, by="channel")
        return page(
            request,
            "ux.html",
            "ux",
            "UX and CX",
            experiences=[(e.key, e.name) for e in snapshot.experiences.values()],
            chosen=chosen,
            tiles=tiles,
            cx=pages.cx_charts(overall, weekly),
        )

    @get("/journeys", summary="Journeys")
    async def journeys(self, request: Request, state: State) -> Template:
        snapshot = loaded_snapshot(runtime_of(state))
        return page(
            request, "journeys.html", "journeys", "Journeys", journeys=list(snapshot.journeys.values())
        )

    @get("/journeys/{key:str}", summary="Journey map")
    async def journey(
        self,
        request: Request,
        state: State,
        key: FromPath[str],
        experience: Annotated[str | None, QueryParameter(max_length=256)] = None,
    ) -> Template:
        runtime = runtime_of(state)
        journey, chosen, result = await journey_report(runtime, key, experience or None, None, None)
        snapshot = loaded_snapshot(runtime)
        return page(
            request,
            "journey.html",
            "journeys",
            f"Journey map: {journey.name}",
            journey=journey,
            experiences=[(e.key, e.name) for e in snapshot.experiences.values()],
            chosen=chosen,
            view=journey_view(result),
        )

    @get("/surveys", summary="Surveys")
    async def surveys(self, request: Request, state: State) -> Template:
        snapshot = loaded_snapshot(runtime_of(state))
        rows = [survey_row(s) for s in snapshot.surveys.values()]
        return page(request, "surveys.html", "surveys", "Surveys", surveys=rows)

    @get("/surveys/{key:str}", summary="One survey")
    async def survey(self, request: Request, state: State, key: FromPath[str]) -> Template:
        """The ``GET /v1/surveys/{key}/results`` report (:func:`survey_report`) as a page."""
        runtime = runtime_of(state)
        snapshot = loaded_snapshot(runtime)
        survey = snapshot.surveys.get(key)
        if survey is None:
            raise NotFound(f"no survey with key {key!r} in the served content")
        streams = all_streams(EVENT_STREAM, runtime.settings.stream_partitions)
        results = await survey_report(runtime.redis, streams, survey)
        view = await anyio.to_thread.run_sync(survey_view, survey, results, snapshot.default_locale)
        return page(request, "survey.html", "surveys", survey.name, v=view)

    @get("/models", summary="Models")
    async def models(self, request: Request, state: State) -> Template:
        return await _models_page(request, state)

    @post("/models/{version:str}/evaluate", status_code=200, summary="Evaluate a policy off-policy")
    async def evaluate(
        self, request: Request, state: State, version: FromPath[str], data: URLEncodedBody[EvaluateForm]
    ) -> Template:
        """The ``POST /v1/models/{version}/evaluate`` path (:func:`evaluate_served`) on the logs."""
        check_origin(request)
        try:
            n_bootstrap = int(data.n_bootstrap)
        except ValueError:
            n_bootstrap = 0
        if not 1 <= n_bootstrap <= MAX_BOOTSTRAP:
            return await _models_page(
                request, state, error=f"bootstrap resamples: expected a whole number from 1 to {MAX_BOOTSTRAP}, "
                f"got {data.n_bootstrap!r}", status_code=400
            )
        runtime = runtime_of(state)
        assert runtime.models is not None
        experiences = runtime.snapshot.experiences if runtime.snapshot is not None else {}
        try:  # an unknown version is a 404 (api/http/errors.py); what cannot be evaluated is said here
            estimate, _ = await evaluate_served(
                runtime.redis,
                runtime.models,
                version,
                experiences,
                n_bootstrap=n_bootstrap,
                partitions=runtime.settings.stream_partitions,
            )
        except NotAPolicyError as exc:
            return await _models_page(request, state, error=str(exc), status_code=400)
        except (EvaluationError, ModelLoadError) as exc:
            return await _models_page(request, state, error=str(exc), status_code=422)
        return await _models_page(
            request, state, evaluation=evaluation_view(version, estimate, n_bootstrap)
        )


async def _experience_page(request: Request, state: State, key: str, preview: dict[str, Any] | None) -> Template:
    runtime = runtime_of(state)
    snapshot = loaded_snapshot(runtime)
    experience = experience_in(snapshot, key)
    results = await experiment_results(
        runtime.redis, experience,
        surveys=list(snapshot.surveys.values()),  # as GET /v1/experiences/{key}/results: the attached ones
        event_streams=all_streams(EVENT_STREAM, runtime.settings.stream_partitions),
    )
    paused = (await live_pauses(runtime.redis, [experience.key])).get(experience.key)
    phases = await list_phases(runtime.redis, experience.key)
    # Charts and statistics for every goal section: in a worker thread, never on the event loop.
    detail = await anyio.to_thread.run_sync(pages.experience_detail, experience, results, time.time(), paused, phases)
    model = runtime.model.current
    segments = list(model.segments) if model else []
    form = preview or {"visitor_id": "preview-visitor", "country": "", "channel": "web", "device": "",
                       "traits": "", "segments": {}}
    decision = None
    error = None
    status = 200
    if preview is not None:
        try:
            overrides = parse_scores(preview["segments"])
            visitor = preview_visitor(
                {
                    "id": preview["visitor_id"],
                    "country": preview["country"].upper() or None,
                    "channel": preview["channel"],
                    "device": preview["device"] or None,
                    "traits": parse_traits(preview["traits"]),
                }
            )
            entries, outcome = preview_decision(
                snapshot, experience, visitor, model, overrides, policies=runtime.policies.current,
                plugins=runtime.plugins.registry if runtime.plugins is not None else None,
            )
            decision = {"segments": outcome.segments, "decisions": outcome.decisions, "entries": entries}
        except PreviewError as exc:
            error, status = str(exc), 400
    return page(
        request,
        "experience.html",
        "experiences",
        experience.name,
        status_code=status,
        experience=experience,
        detail=detail,
        segments=segments,
        channels=CHANNELS,
        form=form,
        decision=decision,
        preview_error=error,
        label=pages.variant_label,
        surveys=experience_surveys_view(
            (s for s in snapshot.surveys.values() if s.experience == experience.key), results.surveys
        ),
    )


async def _models_page(
    request: Request,
    state: State,
    *,
    evaluation: dict[str, Any] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Template:
    runtime = runtime_of(state)
    assert runtime.models is not None
    active, models = await runtime.models.list()
    gates, shadows = await policy_extras(
        runtime.redis, runtime.models, models, active, runtime.settings.stream_partitions
    )
    views = [model_view(m, active, gates.get(m.version)) for m in models]
    return page(
        request,
        "models.html",
        "models",
        "Models",
        status_code=status_code,
        segment_models=[v for v in views if v["kind"] == "segments"],
        policies=[v for v in views if v["kind"] == "policy"],
        evaluation=evaluation,
        error=error,
        max_bootstrap=MAX_BOOTSTRAP,
        shadows=shadows,
    )


# ------------------------------------------------------------------------------------------ errors


def _to_sign_in(request: Request, exc: SignInRequired) -> Response[Any]:
    """Browsers (GET) go to the form and come back afterwards; other requests get a plain 401."""
    if request.method == "GET":
        target = quote(safe_next(request.url.path + (f"?{request.url.query}" if request.url.query else "")), safe="/")
        return Redirect(path=f"/dashboard/sign-in?next={target}", status_code=303)
    return Response(
        {"status_code": 401, "detail": exc.detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


def _error_page(request: Request, exc: HTTPException) -> Response[Any]:
    """Client errors on dashboard pages as a page that says what was wrong (not JSON)."""
    messages = [str(e.get("message", e)) for e in exc.extra] if isinstance(exc.extra, list) else []
    return page(
        request, "error.html", "", f"Error {exc.status_code}", status_code=exc.status_code,
        headers=exc.headers, detail=exc.detail, messages=messages,
    )


dashboard_router = Router(
    path="/dashboard",
    route_handlers=[SignInController, DashboardController],
    include_in_schema=False,
    exception_handlers={**exception_handlers(_error_page), SignInRequired: _to_sign_in},
)

static_router = create_static_files_router(
    path="/dashboard/static", directories=[STATIC], include_in_schema=False, name="dashboard-static"
)
