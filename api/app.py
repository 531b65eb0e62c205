"""``create_app(settings, **overrides)``: the one place Vary is wired together.

Resources (Redis client, content, model, exposure writer) open in the lifespan context and close in
``finally``. Tests and embedding code pass their own settings — and, through ``overrides``, their
own parts (a content source, a Redis client) — instead of patching globals.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from litestar import Litestar
from redis.asyncio import Redis

from api.http.auth import KeyRing, ensure_keys
from api.http.cors import DeliveryCORSMiddleware
from api.dashboard import DASHBOARD_HANDLERS, template_config
from api.frontend import FRONTEND_HANDLERS, complete_openapi, demo_key, exposure_tokens_for
from api.http.limits import check_json_depth
from api.http.export import ExportController
from api.http.models import ModelController
from api.http.openapi_docs import API_DOCS_ASSETS, document_operations, openapi_config
from api.http.plugins import PluginController
from api.plugins import load_plugins
from api.http.visitors import VisitorController
from api.http.content import ContentController
from api.http.delivery import DeliveryController
from api.http.bundle import BUNDLE_HANDLERS
from api.bundles import BundleService
from api.bundle_announcer import BundleAnnouncer
from api.bundle_signing import signer_for
from api.http.errors import exception_handlers, internal_error
from api.http.events import EventController
from api.http.experiences import ExperienceController
from api.http.health import health, ready
from api.http.measurement import MeasurementController
from api.http.surveys import SurveyController, SurveyLinkController, SurveyResultsController
from api.http.metrics import install_metrics
from api.tracing import install_tracing
from api.http.webhooks import contentful_webhook
from api.http.ratelimit import RateLimiter
from api.gc_tuning import FreezeWatcher
from api.loop_lag import LoopLagMonitor
from api.http.hot_path import HotPath
from api.redis_client import SERVER_OPTIONS, async_redis
from api.runtime import Runtime
from api.settings import Settings, load_settings
from content.sources import SyncingSource
from personalization.seams import Plugin
from personalization.privacy import install_access_log_redaction

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger("vary")


def create_app(
    settings: Settings | None = None,
    *,
    content_source: SyncingSource | None = None,
    redis: Redis | None = None,
    print_keys: bool = True,
    plugins: Sequence[Plugin] = (),
    discover_plugins: bool = True,
) -> Litestar:
    """Build the Litestar app. Without a ``redis`` client, ``settings.redis_url`` must be set
    (``vary serve`` starts the embedded server and sets it). ``plugins`` are added to those the
    ``vary.plugins`` entry points name (``discover_plugins=False``: only these; docs/extending.md)."""
    settings = settings or load_settings()
    loaded_plugins = load_plugins(plugins, discover=discover_plugins)
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
            client = async_redis(settings, **SERVER_OPTIONS)  # one server or a cluster (api/redis_client.py)
        uninstall_plugins = loaded_plugins.install()  # extractors + policy types, before content compiles
        try:
            runtime = Runtime.create(settings, client, content_source, plugins=loaded_plugins)
        except BaseException:
            uninstall_plugins()
            raise
        app.state.runtime = runtime
        app.state.rate_limiter = RateLimiter(
            client, {"delivery": settings.rate_limit_delivery_per_s, "admin": settings.rate_limit_admin_per_s}
        )
        loop_lag = app.state.loop_lag = LoopLagMonitor()  # /ready's loop_lag (api/loop_lag.py)
        # The collector stops walking the snapshot and models: frozen now and after each swap (api/gc_tuning.py).
        gc_freezer = FreezeWatcher(
            lambda: (runtime.snapshot, runtime.model.current, runtime.policies.current, runtime.policies.shadows)
        )
        # New bundle versions POSTed to VARY_BUNDLE_WEBHOOK_URL, once cluster-wide (api/bundle_announcer.py).
        announcer = BundleAnnouncer(settings, runtime, app.state.bundles) if settings.bundle_webhook_url else None
        try:
            await runtime.start()
            loop_lag.start()
            gc_freezer.start()
            if announcer is not None:
                await announcer.start()
            yield
        finally:
            if announcer is not None:
                await announcer.close()
            await gc_freezer.stop()
            await loop_lag.stop()
            await runtime.close()
            uninstall_plugins()

    app = Litestar(
        route_handlers=[
            DeliveryController,
            EventController,
            ContentController,
            MeasurementController,
            SurveyController,
            SurveyResultsController,
            SurveyLinkController,
            ExperienceController,
            ModelController,
            VisitorController,
            PluginController,
            ExportController,
            contentful_webhook,
            health,
            ready,
            *DASHBOARD_HANDLERS,
            *FRONTEND_HANDLERS,
            *BUNDLE_HANDLERS,  # GET /v1/bundle, /key, /events (api/http/bundle.py)
            API_DOCS_ASSETS,
        ],
        template_config=template_config(),
        lifespan=[lifespan],
        before_request=check_json_depth,
        request_max_body_size=settings.max_body_bytes,
        exception_handlers={**exception_handlers(), Exception: internal_error},  # api/http/errors.py
        openapi_config=openapi_config(),  # api/http/openapi_docs.py: Swagger UI from local files
        debug=False,
    )
    if settings.hot_path:  # POST /v1/personalize without the framework's layers (api/http/hot_path.py)
        app.asgi_handler = app.state.hot_path = HotPath(app.asgi_handler, app)
    if settings.cors_origins:  # outermost, like Litestar's own CORS middleware, but delivery routes only
        app.asgi_handler = DeliveryCORSMiddleware(app.asgi_handler, settings.cors_origins)
    app.state.key_ring = KeyRing(delivery, admin)
    app.state.settings = settings
    app.state.exposure_tokens = exposure_tokens_for(settings, app.state.key_ring)
    app.state.bundles = BundleService(  # local evaluation (api/bundles.py)
        signer_for(settings.bundle_signing_key, settings.bundle_encryption_key, settings.data_dir)
    )
    app.state.demo_key = demo_key(delivery) if settings.demo_page else None
    install_metrics(app)  # GET /metrics, request latency, counters copied per worker (api/http/metrics.py)
    install_tracing(app)  # OTEL_* variables: a span per request and per decision step (api/tracing.py)
    complete_openapi(app)  # security schemes and typed error bodies for every route
    document_operations(app)  # operation ids, descriptions, 409/413/422/503
    app.state.plugins = loaded_plugins
    return app


def create_app_from_env() -> Litestar:
    """Factory for ``uvicorn --factory``: settings from the environment, keys already printed by the CLI."""
    return create_app(load_settings(), print_keys=False)
