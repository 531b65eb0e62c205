"""The API reference: hand-chosen operation ids, descriptions, every status, and pages served offline.

Why one table here rather than arguments on each route decorator: the operation ids are the method
names of every generated client (``openapi-python-client``, TypeScript generators), so they are a
contract reviewed as a whole — one place lists them all and a test fails when a route has none. The
*description* stays next to the code: it is the handler's docstring (reST roles turned into Markdown
code), with a line here only for handlers that have none.

Statuses Litestar cannot infer are added per route: 413 for every request with a body (the server's
``VARY_MAX_BODY_BYTES``), 409/422 where the handler answers them, 503 (Redis unavailable, with
``Retry-After``) for every route that reads or writes the store.

The reference pages (``/schema``, ``/schema/swagger``) load Swagger UI from files installed with Vary
(``static/apidocs``: swagger-ui-dist, pinned at :data:`SWAGGER_UI_VERSION`, Apache-2.0, its LICENSE
and NOTICE beside it) — a self-hosted service must document itself with the network cut.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import NamedTuple

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router

from api.http.schemas import ErrorBody, Readiness

__all__ = ["API_DOCS_ASSETS", "ASSETS_PATH", "OPERATIONS", "SWAGGER_UI_VERSION", "document_operations", "openapi_config"]

#: The swagger-ui-dist release vendored in ``static/apidocs`` (``npm pack swagger-ui-dist@5.18.2``).
SWAGGER_UI_VERSION = "5.18.2"
ASSETS_DIR = Path(__file__).parent / "static" / "apidocs"
ASSETS_PATH = "/schema/assets"


class Operation(NamedTuple):
    """One operation's id, the statuses it adds to the generic ones, and a description if the handler has no docstring."""

    operation_id: str
    statuses: tuple[int, ...] = ()
    description: str = ""
    error_body: type = ErrorBody


#: (method, path) → operation. Every operation of ``/schema/openapi.json`` must be here (tested).
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/v1/assets/{asset_id}"): Operation("getAsset"),
    ("GET", "/v1/entries/{entry_id}"): Operation("getEntry"),
    ("POST", "/v1/personalize"): Operation("personalize"),
    ("POST", "/v1/events"): Operation("recordEvents"),
    ("POST", "/v1/exposures"): Operation("recordExposures"),
    ("GET", "/v1/content/issues"): Operation(
        "listContentIssues", description="Experiences and audiences the content sync could not use as modelled, "
        "and audiences naming segments the active model does not know, each with the fix to make in Contentful."
    ),
    ("GET", "/v1/cx"): Operation("getCxMetrics"),
    ("GET", "/v1/journeys/{key}"): Operation("getJourney"),
    ("GET", "/v1/lift"): Operation("getGlobalLift"),
    ("GET", "/v1/experiences"): Operation("listExperiences"),
    ("GET", "/v1/experiences/{key}/results"): Operation("getExperienceResults"),
    ("POST", "/v1/experiences/{key}/resume"): Operation("resumeExperience", (409,)),
    ("PUT", "/v1/models/active"): Operation("activateModel", (409,)),
    ("DELETE", "/v1/models/shadow/{experience}"): Operation("stopShadow"),
    ("POST", "/v1/models/{version}/evaluate"): Operation("evaluateModel", (422,)),
    ("GET", "/v1/models/{version}/gate"): Operation("getLaunchGate"),
    ("POST", "/v1/models/{version}/gate"): Operation(
        "rerunLaunchGate", description="Judge the policy's launch gate again on the logged traffic as it is now; "
        "the new verdict replaces the stored one (read it with `GET /v1/models/{version}/gate`)."
    ),
    ("GET", "/v1/models"): Operation(
        "listModels", description="Every registered model's card, and which version is active for segments and per experience."
    ),
    ("POST", "/v1/models"): Operation("registerModel", (409, 422)),
    ("GET", "/v1/models/shadow"): Operation(
        "listShadows", description="The policies running in shadow, by experience: their versions, logged beside the live decision."
    ),
    ("PUT", "/v1/models/shadow"): Operation("startShadow"),
    ("GET", "/v1/models/{version}"): Operation("getModel", description="The card of one registered model version."),
    ("DELETE", "/v1/visitors/{visitor_id}"): Operation("eraseVisitor"),
    ("GET", "/v1/plugins"): Operation(
        "listPlugins", description="The plugins loaded, the seams each fills and their health; the sinks and their backlog."
    ),
    ("POST", "/v1/export"): Operation(
        "exportData", description="Write exposures and events as Parquet files on the server, like `vary export`."
    ),
    ("POST", "/v1/webhooks/contentful"): Operation("contentfulWebhook", (401, 503)),
    ("GET", "/health"): Operation("health", description="Liveness: the process answers. Touches neither Redis nor content."),
    ("GET", "/ready"): Operation(
        "ready", (503,), "Readiness: content loaded and fresh, Redis reachable, a model loaded; 503 with the same "
        "body when any is not, so a load balancer stops sending traffic.", Readiness
    ),
    ("GET", "/metrics"): Operation("metrics"),
}

_STATUS_TEXT = {
    401: "Missing or unknown key, or (webhook) a missing, bad or expired signature or a replay",
    409: "Conflict with the stored state: `detail` says which (e.g. a version registered already, a launch gate "
    "not passed, nothing to resume)",
    413: "Request body larger than the server's limit (`VARY_MAX_BODY_BYTES`)",
    422: "Well-formed but unusable: `detail` says why (e.g. a refused model file, nothing to evaluate on)",
    503: "Unavailable (Redis down; `/ready`: not ready): nothing was changed; retry after `Retry-After` seconds",
}
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def _markdown(docstring: str) -> str:
    """A handler docstring as Markdown: reST ``code`` and :func:`roles` become `code`."""
    text = _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", inspect.cleandoc(docstring))
    return text.replace("``", "`")


def document_operations(app: Litestar) -> None:
    """Give every documented operation its id, description and the statuses it can answer."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation = OPERATIONS.get((method, route.path_format))
                if operation is None:
                    continue
                handler.operation_id = handler.operation_id or operation.operation_id
                doc = handler.fn.__doc__
                handler.description = handler.description or (_markdown(doc) if doc else operation.description)
                statuses = set(operation.statuses)
                if method in ("POST", "PUT", "PATCH"):
                    statuses.add(413)
                if handler.security:  # guarded (complete_openapi ran): it reads or writes Redis
                    statuses.add(503)
                responses = dict(handler.responses or {})
                for status in sorted(statuses):
                    responses.setdefault(
                        status, ResponseSpec(data_container=operation.error_body, description=_STATUS_TEXT[status], generate_examples=False)
                    )
                handler.responses = responses


def openapi_config() -> OpenAPIConfig:
    """The OpenAPI document at ``/schema/openapi.json`` (and ``.yaml``) and Swagger UI from local files."""
    swagger = SwaggerRenderPlugin(
        version=SWAGGER_UI_VERSION,
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
        path=["/", "/swagger"],
    )
    return OpenAPIConfig(
        title="Vary",
        version="0.1.0",
        description="Self-hosted content personalization for Contentful spaces.",
        path="/schema",
        render_plugins=[swagger, JsonRenderPlugin(), YamlRenderPlugin()],
    )


#: Serves the vendored Swagger UI files (public, like the document itself).
API_DOCS_ASSETS = create_static_files_router(
    path=ASSETS_PATH, directories=[ASSETS_DIR], include_in_schema=False, name="apidocs", send_as_attachment=False
)
