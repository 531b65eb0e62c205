"""OpenTelemetry tracing: off by default, on with the standard ``OTEL_*`` variables.

What is traced: one ``SERVER`` span per HTTP request (:class:`ServerSpans`, outermost around the app,
so the lean ``POST /v1/personalize`` path of :mod:`api.http.hot_path` is covered too) and, inside
``POST /v1/personalize`` (and ``GET /v1/entries/{id}``), one child span per step of a decision:
``vary.profile.read``, ``vary.decide`` and ``vary.exposures.submit``
(:mod:`personalization.service` opens them through its ``span`` hook, which this module replaces).
Log lines written inside a span carry its ``trace_id`` and ``span_id`` (:mod:`api.logging_config`).

Why this shape:

* **Off costs nothing.** Without the variables nothing is imported beyond the API package, no
  middleware is added, and each decision step enters one shared no-op context manager.
* **The SDK reads its own variables.** :func:`wanted` only decides *whether* to trace
  (``OTEL_SDK_DISABLED=true`` wins; then ``OTEL_TRACES_EXPORTER`` other than ``none``, or an
  ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``). Everything else is the SDK's: the exporter's endpoint,
  headers, timeout and compression (``OTLPSpanExporter()``), the sampler (``OTEL_TRACES_SAMPLER``),
  batching (``OTEL_BSP_*``), propagation (``OTEL_PROPAGATORS``, W3C ``traceparent`` by default) and
  the resource (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``; ``vary`` when neither names one).
  Exporters are found the way the SDK finds them, by the ``opentelemetry_traces_exporter`` entry
  points; ``otlp`` means OTLP over HTTP/protobuf (the exporter Vary installs).
* **Our own server span, not ``opentelemetry-instrumentation-asgi``.** That instrumentation records the
  URL as sent (``http.target``/``url.query``: visitor ids in paths, ``?key=``), which Vary never logs
  (docs/security.md, "Log masking"), and Litestar's plugin would miss the hot path. Here a span is
  named and labelled by the route *template* (``POST /v1/personalize``), method and status only.
* **Not the global provider.** The provider is this module's (set once per process would make a
  second app in one process — tests — impossible); context and propagation are the API's globals,
  so a plugin's ``trace.get_current_span()`` still sees the request's span.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter

from api import logging_config
from personalization import service

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ASGIApp, Message, Receive, Scope, Send
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["SPAN_NAMES", "ServerSpans", "Tracing", "current", "install_tracing", "setup_tracing", "wanted"]

log = logging.getLogger("vary.tracing")

#: The child spans of a decision, in the order they run.
SPAN_NAMES = ("vary.profile.read", "vary.decide", "vary.exposures.submit")
#: ``service.name`` when neither ``OTEL_SERVICE_NAME`` nor ``OTEL_RESOURCE_ATTRIBUTES`` names one.
DEFAULT_SERVICE_NAME = "vary"
_EXPORTER_ALIASES = {"otlp": "otlp_proto_http"}  # Vary installs the HTTP/protobuf exporter only
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces (see the module docstring)."""
    if _true(env.get("OTEL_SDK_DISABLED")):
        return False
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if names:
        return names != ["none"]
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (``otlp`` when only an endpoint is set), each built
    with no arguments so it reads its own ``OTEL_EXPORTER_*`` variables. Raises ValueError naming the
    variable for an exporter that is not installed."""
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip() not in ("", "none")]
    found = {point.name: point for point in entry_points(group="opentelemetry_traces_exporter")}
    exporters: list[SpanExporter] = []
    for name in names or ["otlp"]:
        point = found.get(_EXPORTER_ALIASES.get(name, name))
        if point is None:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER={name!r}: no such span exporter installed (have: {', '.join(sorted(found))})"
            )
        exporters.append(point.load()())
    return exporters


class Tracing:
    """Tracing while it is on: the provider, its tracer, and how to turn it off again."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("vary")

    def span(self, name: str) -> AbstractContextManager[trace.Span]:
        """A child span of whatever span is current (the request's)."""
        return self.tracer.start_as_current_span(name)

    def install(self) -> None:
        """Route the decision steps' spans and the log lines' trace ids through this provider."""
        service.span = self.span
        logging_config.current_trace = current_trace_ids

    def shutdown(self) -> None:
        """Flush what is batched and put the no-op hooks back (a test's teardown; at process exit the SDK
        flushes by itself, and the app flushes at its shutdown)."""
        if service.span == self.span:
            service.span = service.no_span
        if _ACTIVE.get("tracing") is self:
            _ACTIVE.pop("tracing")
            logging_config.current_trace = None
        self.provider.shutdown()


#: The tracing this process runs, if any (one per process: the hooks it installs are module-level).
_ACTIVE: dict[str, Tracing] = {}


def current() -> Tracing | None:
    """The tracing this process runs, or None."""
    return _ACTIVE.get("tracing")


def setup_tracing(env: Mapping[str, str] = os.environ, exporter: SpanExporter | None = None) -> Tracing | None:
    """Turn tracing on when ``env`` asks for it, or always with an explicit ``exporter`` (tests hand in
    an in-memory one; ``OTEL_SDK_DISABLED=true`` still wins). ``None``: tracing stays off. A second
    call replaces the first's tracing (its spans are flushed)."""
    if _true(env.get("OTEL_SDK_DISABLED")) or (exporter is None and not wanted(env)):
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # OTEL_TRACES_SAMPLER and its argument
    if exporter is not None:  # a test's: every span at once, in order
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for each in _exporters(env):
            provider.add_span_processor(BatchSpanProcessor(each))  # OTEL_BSP_* variables
    previous = _ACTIVE.get("tracing")
    if previous is not None:
        previous.shutdown()
    tracing = _ACTIVE["tracing"] = Tracing(provider)
    tracing.install()
    log.info("tracing on", extra={"service": resource.attributes.get(SERVICE_NAME)})
    return tracing


def current_trace_ids() -> tuple[str, str] | None:
    """The current span's trace and span id in hex (as OTLP backends show them), or None outside one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class _HeaderGetter(Getter[list[tuple[bytes, bytes]]]):
    """Reads propagation headers (``traceparent``, ``baggage``) from an ASGI scope's header list."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted_key = key.lower().encode("latin-1")
        found = [value.decode("latin-1") for name, value in carrier if name.lower() == wanted_key]
        return found or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


_GETTER = _HeaderGetter()


class ServerSpans:
    """ASGI middleware: one ``SERVER`` span per HTTP request, continuing the caller's trace
    (``traceparent``), named ``<METHOD> <route template>`` once the router has matched (``<METHOD>``
    alone when nothing matched), with the method, route template and status as attributes; a 5xx
    marks it an error. Nothing the client chose — path as sent, query, headers — is recorded."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self._tracer = tracing.tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
        parent = propagate.extract(scope["headers"], getter=_GETTER)
        with self._tracer.start_as_current_span(
            method, context=parent, kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scope.get("scheme", "http")},
        ) as span:
            status = 0

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, sending)
            finally:
                template: Any = scope.get("path_template")
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                if status:
                    span.set_attribute("http.response.status_code", status)
                if status >= 500 or not status:
                    span.set_status(trace.StatusCode.ERROR)


def install_tracing(app: Litestar, env: Mapping[str, str] = os.environ) -> Tracing | None:
    """Trace ``app``'s requests when tracing is on (already set up by :func:`setup_tracing`, or asked
    for by ``env``); else leave it untouched. The server span is put around the app's handler at
    start-up, not now: ``vary serve`` adds the access log after building the app, and inside the
    span the access log's lines carry the request's trace id too. At shutdown the batch is flushed."""
    tracing = current() or setup_tracing(env)
    if tracing is None:
        return None

    def wrap(app: Litestar) -> None:
        if not isinstance(app.asgi_handler, ServerSpans):
            app.asgi_handler = ServerSpans(app.asgi_handler, tracing)

    def flush(app: Litestar) -> None:
        tracing.provider.force_flush()

    app.on_startup.append(wrap)
    app.on_shutdown.append(flush)
    return tracing
