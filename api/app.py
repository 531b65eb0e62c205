"""``create_app(settings, **overrides)``: the one place Vary is wired together.

Resources (Redis client, content, model, exposure writer) open in the lifespan context and close in
``finally``. Tests and embedding code pass their own settings — and, through ``overrides``, their
own parts (a content source, a Redis client) — instead of patching globals.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from redis.asyncio import Redis

from api.auth import KeyRing, ensure_keys
from api.cors import DeliveryCORSMiddleware
from api.limits import check_json_depth
from api.model_routes import ModelController
from api.visitor_routes import VisitorController
from api.routes import AdminController, DeliveryController, contentful_webhook, health, ready
from api.ratelimit import RateLimiter
from api.runtime import Runtime
from api.settings import Settings, load_settings
from content.sources import SyncingSource
from personalization.privacy import install_access_log_redaction, redact_path

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger("vary")


def _internal_error(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    """Last resort: log the bug with its traceback, tell the client nothing internal."""
    log.exception("unhandled error on %s %s", request.method, redact_path(request.url.path), exc_info=exc)
    return Response(
        {"status_code": 500, "detail": "internal error; it has been logged"},
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _http_error(request: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.detail}
    if exc.extra:
        body["extra"] = exc.extra
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def create_app(
    settings: Settings | None = None,
    *,
    content_source: SyncingSource | None = None,
    redis: Redis | None = None,
    print_keys: bool = True,
) -> Litestar:
    """Build the Litestar app. Without a ``redis`` client, ``settings.redis_url`` must be set
    (``vary serve`` starts the embedded server and sets it)."""
    settings = settings or load_settings()
    install_access_log_redaction()  # uvicorn's access log (--access-log) shows hashed visitor ids
    delivery, admin, generated = ensure_keys(settings.delivery_keys, settings.admin_keys, settings.data_dir)
    if generated and print_keys:
        for scope, key in generated.items():
            print(f"vary: generated {scope} key: {key}", flush=True)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        client = redis
        if client is None:
            if not settings.redis_url:
                raise RuntimeError("no Redis: set VARY_REDIS_URL or start Vary with `vary serve`")
            client = Redis.from_url(
                settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30
            )
        runtime = Runtime.create(settings, client, content_source)
        app.state.runtime = runtime
        app.state.rate_limiter = RateLimiter(
            client, {"delivery": settings.rate_limit_delivery_per_s, "admin": settings.rate_limit_admin_per_s}
        )
        try:
            await runtime.start()
            yield
        finally:
            await runtime.close()

    app = Litestar(
        route_handlers=[
            DeliveryController,
            AdminController,
            ModelController,
            VisitorController,
            contentful_webhook,
            health,
            ready,
        ],
        lifespan=[lifespan],
        before_request=check_json_depth,
        request_max_body_size=settings.max_body_bytes,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        openapi_config=OpenAPIConfig(
            title="Vary",
            version="0.1.0",
            description="Self-hosted content personalization for Contentful spaces.",
            path="/schema",
        ),
        debug=False,
    )
    if settings.cors_origins:  # outermost, like Litestar's own CORS middleware, but delivery routes only
        app.asgi_handler = DeliveryCORSMiddleware(app.asgi_handler, settings.cors_origins)
    app.state.key_ring = KeyRing(delivery, admin)
    app.state.settings = settings
    return app


def create_app_from_env() -> Litestar:
    """Factory for ``uvicorn --factory``: settings from the environment, keys already printed by the CLI."""
    return create_app(load_settings(), print_keys=False)
