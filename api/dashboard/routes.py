"""Dashboard routes: server-rendered pages over the same functions the JSON admin API calls.

Authentication is the admin key, either as ``Authorization: Bearer`` (scripts, curl) or through the
sign-in form, which sets a signed session cookie (:mod:`api.dashboard.session`). A browser without
either is sent to the sign-in form; a delivery key is refused (403) as on every admin route.
Handlers call one domain function each (results, CX, journey map, model registry, evaluation, the
decision itself for "preview as") and hand the answer to :mod:`api.dashboard.pages` for display.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlparse

from litestar import Controller, Request, Router
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Response, Template
from litestar.static_files import create_static_files_router

from api.http.auth import requires_admin
from api.dashboard import pages
from api.dashboard.preview import (
    PreviewError,
    parse_scores,
    parse_traits,
    preview_decision,
    preview_visitor,
)
from api.dashboard.session import (
    COOKIE_NAME,
    SESSION_TTL_S,
    issue_token,
    token_is_valid,
)
from api.http.handlers import get, post
from api.http.routes import loaded_snapshot as _snapshot
from api.http.routes import runtime_of as _runtime
from personalization.measurement.aggregation import week_index
from personalization.measurement.cx import journey_metrics, week_monday
from personalization.models.evaluation import (
    EvaluationError,
    NotAPolicyError,
    evaluate_served,
)
from personalization.measurement.journeys import DEFAULT_PERIOD_S, journey_map
from personalization.models.files import ModelLoadError
from personalization.models.registry import UnknownModelVersion
from personalization.measurement.results import experiment_results
from personalization.types import CHANNELS

__all__ = ["STATIC", "TEMPLATES", "SignInRequired", "dashboard_router", "requires_dashboard", "static_router"]

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
#: Most weeks the CX-over-time charts show (each is one small read of the weekly counters).
CX_WEEKS = 12
#: Bootstrap resamples the evaluate form may ask for (the JSON route allows the same).
MAX_BOOTSTRAP = 2000


class SignInRequired(NotAuthorizedException):
    """No key and no valid session: a browser is sent to the sign-in form, anything else gets 401."""


# ------------------------------------------------------------------------------------------ auth


def _secret(connection: ASGIConnection) -> bytes:
    app_state = connection.app.state
    return app_state.key_ring.session_secret(app_state.settings.session_secret)  # type: ignore[no-any-return]


def _has_session(connection: ASGIConnection) -> bool:
    return token_is_valid(_secret(connection), connection.cookies.get(COOKIE_NAME), time.time())


async def requires_dashboard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """An admin key in the header (checked and rate-limited as on ``/v1`` admin routes), or a valid
    session cookie from the sign-in form."""
    if connection.headers.get("authorization"):
        await requires_admin(connection, handler)
        return
    if _has_session(connection):
        return
    raise SignInRequired(detail="sign in with an admin key (or send it as 'Authorization: Bearer <key>')")


def _check_origin(request: Request) -> None:
    """A form POST from another site is refused even before the cookie's SameSite=Strict matters."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if urlparse(origin).netloc != request.headers.get("host", ""):
        raise PermissionDeniedException(detail=f"form posted from another origin ({origin}); refused")


def _safe_next(target: str | None) -> str:
    """Only a dashboard path on this host (never ``//evil`` or a full URL) is a place to go back to."""
    if target and target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


def _https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


# ------------------------------------------------------------------------------------------ helpers


def _page(request: Request, template: str, nav: str, title: str, status_code: int = 200, **context: Any) -> Template:
    """A page with the context every page needs (navigation, whether a sign-out button applies)."""
    return Template(
        template_name=template,
        context={
            "nav": nav,
            "title": title,
            "cookie_session": COOKIE_NAME in request.cookies and not request.headers.get("authorization"),
            **context,
        },
        status_code=status_code,
    )


# ------------------------------------------------------------------------------------------ sign-in


@dataclass
class SignInForm:
    """The sign-in form: the admin key and where to go afterwards."""

    key: str = ""
    next: str = ""


class SignInController(Controller):
    path = "/"

    @get("/sign-in", summary="Dashboard sign-in form")
    async def sign_in_form(
        self, request: Request, next_: Annotated[str | None, QueryParameter(name="next", max_length=512)] = None
    ) -> Template:
        return _page(request, "sign_in.html", "sign-in", "Sign in", next=_safe_next(next_), message=None)

    @post("/sign-in", status_code=303, summary="Sign in with an admin key")
    async def sign_in(self, request: Request, data: URLEncodedBody[SignInForm]) -> Template | Redirect:
        """A valid admin key sets the session cookie and goes on; anything else shows the form again
        with what was wrong (400 empty, 401 unknown, 403 delivery key)."""
        _check_origin(request)
        target = _safe_next(data.next)
        key = data.key.strip()
        scope = request.app.state.key_ring.scope_of(key) if key else None
        if scope != "admin":
            status, message = {
                None: (401, "That key is not a Vary key. Check it and try again."),
                "delivery": (403, "That is a delivery key; the dashboard needs an admin key."),
            }[scope]
            if not key:
                status, message = 400, "Enter an admin key."
            return _page(request, "sign_in.html", "sign-in", "Sign in", status_code=status, next=target, message=message)
        response = Redirect(path=target, status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            issue_token(_secret(request), time.time()),
            max_age=SESSION_TTL_S,
            path="/dashboard",
            httponly=True,
            samesite="strict",
            secure=_https(request),
        )
        return response

    @post("/sign-out", status_code=303, summary="End the dashboard session")
    async def sign_out(self, request: Request) -> Redirect:
        _check_origin(request)
        response = Redirect(path="/dashboard/sign-in", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/dashboard")
        return response


# ------------------------------------------------------------------------------------------ pages


@dataclass
class EvaluateForm:
    n_bootstrap: str = "200"


class DashboardController(Controller):
    path = "/"
    guards = [requires_dashboard]

    @get("/", summary="Experiences")
    async def experiences(self, request: Request, state: State) -> Template:
        runtime = _runtime(state)
        snapshot = _snapshot(runtime)
        now = time.time()
        experiences = list(snapshot.experiences.values())
        results = await asyncio.gather(*(experiment_results(runtime.redis, e) for e in experiences))
        rows = [pages.experience_row(e, r, now) for e, r in zip(experiences, results, strict=True)]
        return _page(request, "experiences.html", "experiences", "Experiences", rows=rows)

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
        runtime = _runtime(state)
        snapshot = _snapshot(runtime)
        keys = list(snapshot.experiences)
        chosen_key = experience or (keys[0] if keys else None)
        chosen = snapshot.experiences.get(chosen_key) if chosen_key else None
        if chosen_key and chosen is None:
            raise NotFoundException(detail=f"no experience with key {chosen_key!r} in the served content")
        tiles = pages.ux_tiles(await experiment_results(runtime.redis, chosen)) if chosen else []
        overall = await journey_metrics(runtime.redis, since=None, until=None, by="channel")
        weekly = []
        if overall.period.since is not None and overall.period.until is not None:
            first = week_index(_day_ts(overall.period.since))
            last = week_index(_day_ts(overall.period.until))
            weeks = list(range(max(first, last - CX_WEEKS + 1), last + 1))
            reports = await asyncio.gather(
                *(journey_metrics(runtime.redis, since=week_monday(w), until=week_monday(w), by="channel") for w in weeks)
            )
            weekly = [(week_monday(w).isoformat(), r) for w, r in zip(weeks, reports, strict=True)]
        return _page(
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
        snapshot = _snapshot(_runtime(state))
        return _page(
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
        runtime = _runtime(state)
        snapshot = _snapshot(runtime)
        journey = snapshot.journeys.get(key)
        if journey is None:
            raise NotFoundException(detail=f"no journey with key {key!r} in the served content")
        chosen = None
        if experience:
            chosen = snapshot.experiences.get(experience)
            if chosen is None:
                raise NotFoundException(detail=f"no experience with key {experience!r} in the served content")
        now = time.time()
        result = await journey_map(
            runtime.redis, journey, experience=chosen, since_ts=now - DEFAULT_PERIOD_S, until_ts=now,
            partitions=runtime.settings.stream_partitions,
        )
        return _page(
            request,
            "journey.html",
            "journeys",
            f"Journey map: {journey.name}",
            journey=journey,
            experiences=[(e.key, e.name) for e in snapshot.experiences.values()],
            chosen=chosen,
            view=pages.journey_view(result),
        )

    @get("/models", summary="Models")
    async def models(self, request: Request, state: State) -> Template:
        return await _models_page(request, state)

    @post("/models/{version:str}/evaluate", status_code=200, summary="Evaluate a policy off-policy")
    async def evaluate(
        self, request: Request, state: State, version: FromPath[str], data: URLEncodedBody[EvaluateForm]
    ) -> Template:
        """The ``POST /v1/models/{version}/evaluate`` path (:func:`evaluate_served`) on the logs."""
        _check_origin(request)
        try:
            n_bootstrap = int(data.n_bootstrap)
        except ValueError:
            n_bootstrap = 0
        if not 1 <= n_bootstrap <= MAX_BOOTSTRAP:
            return await _models_page(
                request, state, error=f"bootstrap resamples: expected a whole number from 1 to {MAX_BOOTSTRAP}, "
                f"got {data.n_bootstrap!r}", status_code=400
            )
        runtime = _runtime(state)
        assert runtime.models is not None
        experiences = runtime.snapshot.experiences if runtime.snapshot is not None else {}
        try:
            estimate, _ = await evaluate_served(
                runtime.redis,
                runtime.models,
                version,
                experiences,
                n_bootstrap=n_bootstrap,
                partitions=runtime.settings.stream_partitions,
            )
        except UnknownModelVersion:
            raise NotFoundException(detail=f"no model with version {version!r}") from None
        except NotAPolicyError as exc:
            return await _models_page(request, state, error=str(exc), status_code=400)
        except (EvaluationError, ModelLoadError) as exc:
            return await _models_page(request, state, error=str(exc), status_code=422)
        return await _models_page(
            request, state, evaluation=pages.evaluation_view(version, estimate, n_bootstrap)
        )


def _day_ts(day: date) -> float:
    """Unix seconds of a date's midnight UTC (for :func:`week_index`)."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


async def _experience_page(request: Request, state: State, key: str, preview: dict[str, Any] | None) -> Template:
    runtime = _runtime(state)
    snapshot = _snapshot(runtime)
    experience = snapshot.experiences.get(key)
    if experience is None:
        raise NotFoundException(detail=f"no experience with key {key!r} in the served content")
    results = await experiment_results(runtime.redis, experience)
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
                snapshot, experience, visitor, model, overrides, policies=runtime.policies.current
            )
            decision = {"segments": outcome.segments, "decisions": outcome.decisions, "entries": entries}
        except PreviewError as exc:
            error, status = str(exc), 400
    return _page(
        request,
        "experience.html",
        "experiences",
        experience.name,
        status_code=status,
        experience=experience,
        detail=pages.experience_detail(experience, results, time.time()),
        segments=segments,
        channels=CHANNELS,
        form=form,
        decision=decision,
        preview_error=error,
        label=pages.variant_label,
    )


async def _models_page(
    request: Request,
    state: State,
    *,
    evaluation: dict[str, Any] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Template:
    runtime = _runtime(state)
    assert runtime.models is not None
    active, models = await runtime.models.list()
    views = [pages.model_view(m, active) for m in models]
    return _page(
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
    )


# ------------------------------------------------------------------------------------------ errors


def _to_sign_in(request: Request, exc: SignInRequired) -> Response[Any]:
    """Browsers (GET) go to the form and come back afterwards; other requests get a plain 401."""
    if request.method == "GET":
        target = quote(_safe_next(request.url.path + (f"?{request.url.query}" if request.url.query else "")), safe="/")
        return Redirect(path=f"/dashboard/sign-in?next={target}", status_code=303)
    return Response(
        {"status_code": 401, "detail": exc.detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


def _error_page(request: Request, exc: HTTPException) -> Response[Any]:
    """Client errors on dashboard pages as a page that says what was wrong (not JSON)."""
    messages = [str(e.get("message", e)) for e in exc.extra] if isinstance(exc.extra, list) else []
    return _page(
        request, "error.html", "", f"Error {exc.status_code}", status_code=exc.status_code,
        detail=exc.detail, messages=messages,
    )


dashboard_router = Router(
    path="/dashboard",
    route_handlers=[SignInController, DashboardController],
    include_in_schema=False,
    exception_handlers={SignInRequired: _to_sign_in, HTTPException: _error_page},
)

static_router = create_static_files_router(
    path="/dashboard/static", directories=[STATIC], include_in_schema=False, name="dashboard-static"
)
