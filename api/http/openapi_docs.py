"""The API reference: hand-chosen operation ids, descriptions, every status, and pages served offline.

Why one table here rather than arguments on each route decorator: the operation ids are the method
names of every generated client (``openapi-python-client``, TypeScript generators), so they are a
contract reviewed as a whole — one place lists them all and a test fails when a route has none. The
*description* stays next to the code: it is the handler's docstring (reST roles turned into Markdown
code), with a line here only for handlers that have none.

Statuses Litestar cannot infer are added per route: 400 with Vary's ``ErrorBody`` for every route
that takes parameters or a body (Litestar's own 400 schema makes client generators drop the answer),
413 for every request with a body (the server's ``VARY_MAX_BODY_BYTES``), 409/422 where the handler
answers them, 503 (Redis unavailable, with ``Retry-After``) for every route that reads or writes the
store. (401/403/404/429 come with the key guards: :mod:`api.frontend.openapi`.)

Two things Litestar cannot generate are finished on the document itself (:func:`finish_document`,
run once, the first time a reference page or ``/schema/openapi.json`` is served):

* **the event union**: ``EventBatch.events`` is ``list[dict]`` at run time, because each event is
  decoded on its own so that one bad event rejects only itself (and the route stays one
  ``msgspec.convert`` per event). The document instead types each item as ``oneOf`` the event kinds of
  :mod:`personalization.measurement.events`, one schema per tagged Struct (msgspec's own JSON schema
  of them, named ``<Kind>Event``), with ``discriminator: {propertyName: type, mapping}`` — so a
  generated client has one type per kind, and a new kind appears without touching this file.
* **examples**: every operation's request body and answers carry one — hand-written in
  :data:`EXAMPLES` for the routes front ends call, otherwise built from the schema (defaults, enums,
  bounds), so they always match it.

Property descriptions come from the Structs themselves: ``Annotated[T, Meta(description=...)]`` on a
field (Litestar and msgspec both read it; a ``#:`` comment is invisible at run time).

The reference pages (``/schema``, ``/schema/swagger``) load Swagger UI from files installed with Vary
(``static/apidocs``: swagger-ui-dist, pinned at :data:`SWAGGER_UI_VERSION`, Apache-2.0, its LICENSE
and NOTICE beside it) — a self-hosted service must document itself with the network cut.
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
from litestar import Litestar, Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router

from api.http.health_schemas import Readiness
from api.http.schemas import ErrorBody
from personalization.measurement.events import Event

__all__ = [
    "API_DOCS_ASSETS",
    "ASSETS_PATH",
    "EXAMPLES",
    "OPERATIONS",
    "SWAGGER_UI_VERSION",
    "document_operations",
    "event_kinds",
    "finish_document",
    "openapi_config",
]

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
    ("POST", "/v1/surveys/due"): Operation("surveysDue"),
    ("GET", "/v1/surveys/{key}/results"): Operation("getSurveyResults"),
    ("GET", "/v1/surveys/{key}/answer"): Operation("answerSurveyLink"),
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
    ("GET", "/v1/export/{export_id}"): Operation("downloadExport"),
    ("POST", "/v1/webhooks/contentful"): Operation("contentfulWebhook", (401, 503)),
    ("GET", "/health"): Operation("health", description="Liveness: the process answers. Touches neither Redis nor content."),
    ("GET", "/ready"): Operation(
        "ready", (503,), "Readiness: content loaded and fresh, Redis reachable, a model loaded; 503 with the same "
        "body when any is not, so a load balancer stops sending traffic.", Readiness
    ),
    ("GET", "/metrics"): Operation("metrics"),
    ("GET", "/v1/bundle"): Operation("getBundle"),
    ("GET", "/v1/bundle/key"): Operation("getBundleKey"),
}

_STATUS_TEXT = {
    400: "Bad input: `detail` says what, `extra` where (`[{key, message}]`, e.g. `entries[2]`)",
    401: "Missing or unknown key, or (webhook) a missing, bad or expired signature or a replay",
    409: "Conflict with the stored state: `detail` says which (e.g. a version registered already, a launch gate "
    "not passed, nothing to resume)",
    413: "Request body larger than the server's limit (`VARY_MAX_BODY_BYTES`)",
    422: "Well-formed but unusable: `detail` says why (e.g. a refused model file, nothing to evaluate on)",
    503: "Unavailable (Redis down; `/ready`: not ready): nothing was changed; retry after `Retry-After` seconds",
}
#: Handler arguments Litestar provides (not from the request's parameters or body).
_INJECTED = frozenset({"request", "state", "scope", "socket", "headers", "cookies"})
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
                if set(handler.parsed_fn_signature.parameters) - _INJECTED or method in ("POST", "PUT", "PATCH"):
                    statuses.add(400)  # a bad parameter or body (Litestar's own 400 schema defeats generators)
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


#: Hand-written examples for the routes front ends call: (method, path) → {"request": body, status: body}.
#: Every other body gets one built from its schema (:func:`_example`).
EXAMPLES: dict[tuple[str, str], dict[str | int, Any]] = {
    ("POST", "/v1/personalize"): {
        "request": {
            "visitor": {"id": "v-7f3a", "channel": "web", "country": "CA", "page": "https://shop.example/"},
            "entries": ["heroHome", "bannerShipping"],
            "locale": "en-US",
            "exposures": "on_view",
        },
        200: {
            "visitor_id": "v-7f3a",
            "locale": "en-US",
            "segments": {"price_sensitive": 0.31, "high_intent": 0.72, "loyal": 0.05},
            "model_version": "2026-11-30T08:00:00Z-segments",
            "content_version": "c-41",
            "degraded": False,
            "entries": [
                {
                    "entry_id": "heroHome",
                    "experience": "hero-north-america",
                    "variant": 1,
                    "variant_entry_id": "heroHomeCanada",
                    "is_control": False,
                    "holdout": False,
                    "propensity": 0.5,
                    "reason": "assigned",
                    "exposure_id": "e-01J9Z",
                    "content_type": "hero",
                    "fields": {"title": "Free shipping across Canada"},
                    "hidden": False,
                    "exposure_token": "1.aGVyb0hvbWU.9c1e",
                    "locale": "en-US",
                }
            ],
            "includes": {"Entry": [], "Asset": []},
            "changes": [],
            "survey": None,
        },
    },
    ("POST", "/v1/events"): {
        "request": {
            "events": [
                {"type": "page_view", "visitor_id": "v-7f3a", "page": "https://shop.example/", "event_id": "ev-1"},
                {"type": "conversion", "visitor_id": "v-7f3a", "goal": "signup", "ts": "2026-12-04T10:15:00Z"},
                {"type": "purchase", "visitor_id": "v-7f3a", "order_id": "o-991", "value": 42.5, "currency": "CAD"},
                {"type": "purchase", "visitor_id": "v-7f3a", "order_id": "o-992", "value": 9.5, "currency": "XYZ"},
            ]
        },
        202: {
            "accepted": 3,
            "duplicates": 0,
            "dropped": 0,
            "spooled": 0,
            "rejected": [
                {
                    "index": 3,
                    "key": "events[3].currency",
                    "message": "Expected an ISO 4217 currency code such as EUR or USD, got 'XYZ'",
                    "field": "currency",
                }
            ],
        },
    },
    ("POST", "/v1/exposures"): {
        "request": {"tokens": ["1.aGVyb0hvbWU.9c1e", "not-a-token"]},
        202: {
            "accepted": 1,
            "duplicates": 0,
            "rejected": [{"index": 1, "key": "tokens[1]", "message": "malformed", "reason": "malformed"}],
        },
    },
}

_ERROR_EXAMPLES: dict[int, dict[str, Any]] = {
    400: {
        "status_code": 400,
        "detail": "Validation failed for POST /v1/personalize",
        "extra": [{"key": "entries", "message": "Expected `array` of length >= 1", "source": "body"}],
    },
    401: {"status_code": 401, "detail": "unknown API key"},
    403: {"status_code": 403, "detail": "this route needs an admin key; a delivery key was sent"},
    404: {"status_code": 404, "detail": "no entry 'nope'"},
    409: {"status_code": 409, "detail": "model version '2026-11-30' is registered already"},
    413: {"status_code": 413, "detail": "Request Entity Too Large"},
    422: {"status_code": 422, "detail": "model refused: not a scikit-learn pipeline"},
    429: {
        "status_code": 429,
        "detail": "rate limit exceeded: 600 requests per 60 s per API key on delivery routes",
        "extra": {"limit": 600, "window_s": 60, "scope": "delivery"},
    },
    503: {"status_code": 503, "detail": "storage unavailable: Redis cannot be reached (ConnectionError); retry in 5 s"},
}
_REF = "#/components/schemas/"
#: Strings tried, in order, for a ``pattern`` in a built example: a locale, a country, a currency, a date.
_PATTERNED = ("en-US", "CA", "EUR", "2026-12-04", "v1", "a")


def event_kinds() -> dict[str, type[msgspec.Struct]]:
    """Tag → Struct of every event kind the ``Event`` union accepts (``page_view`` → ``PageView``)."""
    kinds: dict[str, type[msgspec.Struct]] = {}
    for kind in typing.get_args(Event):
        info = msgspec.inspect.type_info(kind)
        assert isinstance(info, msgspec.inspect.StructType) and isinstance(info.tag, str)
        kinds[info.tag] = kind
    return kinds


def _event_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``oneOf`` for one event and a component per kind, from msgspec's JSON schema of the union."""
    names = {kind.__name__: f"{kind.__name__}Event" for kind in event_kinds().values()}
    (_, components) = msgspec.json.schema_components([Event], ref_template=_REF + "{name}")
    schemas: dict[str, Any] = {}
    mapping: dict[str, str] = {}
    for tag, kind in event_kinds().items():
        schema = dict(components[kind.__name__])
        schema["title"] = names[kind.__name__]
        schema.setdefault("description", f"A `{tag}` event.")
        properties = {name: _hoisted(spec) for name, spec in schema["properties"].items()}
        properties["type"] = {**properties["type"], "description": f"The event kind: always `{tag}` for this one."}
        # Taken off the event by the route before it is decoded (api/http/events.py), so not Struct fields.
        properties["user_id"] = {
            "type": "string", "minLength": 1, "maxLength": 256,
            "description": "A known customer id: the visitor is linked to that person and the event recorded under "
            "them. Needs the admin key or `identity_token`.",
        }
        properties["identity_token"] = {
            "type": "string", "maxLength": 200,
            "description": "`<expires>.<hex HMAC-SHA256>` of `user_id`, signed by the customer's backend with "
            "`VARY_IDENTITY_SECRET`: proves `user_id` with a delivery key.",
        }
        schema["properties"] = properties
        # Without ``visitor_id`` an event with ``user_id`` is the person's (the route fills it in).
        schema["required"] = [name for name in schema.get("required", []) if name != "visitor_id"]
        schemas[names[kind.__name__]] = schema
        mapping[tag] = _REF + names[kind.__name__]
    union = {
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }
    return union, schemas


def _hoisted(spec: dict[str, Any]) -> dict[str, Any]:
    """msgspec puts the description of ``Annotated[T, Meta(description=...)] | None`` on the ``T`` branch
    of its ``anyOf``; readers (and generators) look for it on the property."""
    if "description" in spec:
        return spec
    for branch in spec.get("anyOf", []):
        if "description" in branch:
            return {**spec, "description": branch["description"]}
    return spec


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].removeprefix(_REF)]
    return schema


def _example(document: dict[str, Any], schema: dict[str, Any], name: str = "", depth: int = 0) -> Any:
    """A value that satisfies ``schema``: its own example or default, else the first choice, else a
    value of its type within its bounds, named after the property for strings."""
    schema = _resolve(document, schema)
    for key in ("example", "const"):
        if key in schema:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema and schema["default"] not in (None, [], {}):
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("oneOf", "anyOf", "allOf"):
        choices = [c for c in schema.get(key, []) if c.get("type") != "null"]
        if choices:  # Litestar puts a nullable string's bounds beside its ``oneOf``: they apply to the choice
            outer = {k: v for k, v in schema.items() if k in ("pattern", "minLength", "maxLength", "minimum", "maximum")}
            return _example(document, {**outer, **choices[0]}, name, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        if depth > 4:
            return {}
        properties = schema.get("properties", {})
        return {key: _example(document, value, key, depth + 1) for key, value in properties.items()}
    if kind == "array":
        if "prefixItems" in schema:
            return [_example(document, item, name, depth + 1) for item in schema["prefixItems"]]
        return [_example(document, schema["items"], name, depth + 1)] if depth <= 4 and "items" in schema else []
    if kind == "integer":
        return int(schema.get("minimum", 1) or 1)
    if kind == "number":
        return max(float(schema.get("minimum", 0.5)), 0.5) if "maximum" not in schema else schema.get("minimum", 0.0)
    if kind == "boolean":
        return True
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2026-12-04T10:15:00Z"
        if schema.get("format") == "binary":
            return None
        pattern = schema.get("pattern")
        if pattern:
            return next((text for text in _PATTERNED if re.search(pattern, text)), None)
        return (name or "text").ljust(int(schema.get("minLength", 0)), "x")
    return None


def _with_example(document: dict[str, Any], media: dict[str, Any], value: Any, summary: str) -> None:
    if "examples" in media or "example" in media or value is None:
        return
    media["examples"] = {"example": {"summary": summary, "value": value}}


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """Type the event union and give every operation examples (see the module docstring); idempotent."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    if "PageViewEvent" in schemas:  # finished already (the render plugins share one cached document)
        return document
    union, event_schemas = _event_schemas()
    schemas.update(event_schemas)
    if "EventBatch" in schemas:
        schemas["EventBatch"]["properties"]["events"]["items"] = union
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            written = EXAMPLES.get((method.upper(), path), {})
            for media in operation.get("requestBody", {}).get("content", {}).values():
                value = written.get("request") or _example(document, media.get("schema", {}))
                _with_example(document, media, value, "A request")
            for status, response in operation["responses"].items():
                for media_type, media in response.get("content", {}).items():
                    code = int(status) if status.isdigit() else 0
                    if code >= 400:
                        base = _resolve(document, media.get("schema", {}))
                        value = _ERROR_EXAMPLES.get(code) if base.get("title") == "ErrorBody" else None
                        value = value or _example(document, media.get("schema", {}))
                    elif media_type.startswith("text/plain"):
                        value = "# HELP vary_decisions_total Decisions made.\n# TYPE vary_decisions_total counter\n"
                    else:
                        value = written.get(code) or _example(document, media.get("schema", {}))
                    _with_example(document, media, value, response.get("description", status))
    return document


class _Finished:
    """A render plugin that serves the finished document (:func:`finish_document`)."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, finish_document(openapi_schema))  # type: ignore[misc]


class _Swagger(_Finished, SwaggerRenderPlugin):
    pass


class _Json(_Finished, JsonRenderPlugin):
    pass


class _Yaml(_Finished, YamlRenderPlugin):
    pass


def openapi_config() -> OpenAPIConfig:
    """The OpenAPI document at ``/schema/openapi.json`` (and ``.yaml``) and Swagger UI from local files."""
    swagger = _Swagger(
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
        render_plugins=[swagger, _Json(), _Yaml()],
    )


#: Serves the vendored Swagger UI files (public, like the document itself).
API_DOCS_ASSETS = create_static_files_router(
    path=ASSETS_PATH, directories=[ASSETS_DIR], include_in_schema=False, name="apidocs", send_as_attachment=False
)
