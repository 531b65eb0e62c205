"""OpenTelemetry tracing (api/tracing.py) through the real app and the real Valkey: a server span per
request with the decision's steps as its children, trace ids in log lines, nothing when off."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import msgspec
import pytest
from litestar.testing import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api import logging_config, tracing
from api.app import create_app
from api.logging_access import install_access_log
from api.logging_config import configure_logging
from api.settings import Settings
from personalization import service

BODY = {"visitor": {"id": "trace-visitor", "country": "US"}, "entries": ["heroHome", "bannerShipping"]}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    on = tracing.setup_tracing({}, exporter=spans)
    assert on is not None and tracing.current() is on
    yield spans
    on.shutdown()
    assert tracing.current() is None and service.span is service.no_span and logging_config.current_trace is None


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The one log handler as ``vary serve`` sets it up (JSON lines), writing to a buffer; call
    :func:`configure_logging` on it after building the app, as ``vary serve`` does."""
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    yield out
    for handler in list(root.handlers):
        if getattr(handler, "stream", None) is out:
            root.removeHandler(handler)
    root.setLevel(level)


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


@pytest.mark.parametrize("hot_path", [True, False], ids=["hot-path", "litestar"])
def test_personalize_is_one_server_span_with_the_steps_as_children(
    settings: Settings, delivery: dict[str, str], exporter: InMemorySpanExporter, hot_path: bool
) -> None:
    app = create_app(msgspec.structs.replace(settings, hot_path=hot_path))
    with TestClient(app) as client:
        answer = client.post("/v1/personalize", json=BODY, headers={**delivery, "traceparent": TRACEPARENT})
        assert answer.status_code == 200, answer.text
        if hot_path:
            assert app.state.hot_path.answered == 1  # the lean path was traced, not bypassed
    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.kind is trace.SpanKind.SERVER]
    assert server.name == "POST /v1/personalize"
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/personalize"
    assert server.attributes["http.response.status_code"] == 200
    assert server.resource.attributes["service.name"] == "vary"
    # the caller's trace is continued (W3C traceparent)
    assert format(server.context.trace_id, "032x") == TRACEPARENT.split("-")[1]
    assert server.parent is not None and format(server.parent.span_id, "016x") == TRACEPARENT.split("-")[2]
    steps = [s for s in spans if s.name in tracing.SPAN_NAMES]
    assert sorted(s.name for s in steps) == sorted(tracing.SPAN_NAMES)  # one each
    for step in steps:
        assert step.parent is not None and step.parent.span_id == server.context.span_id, step.name
        assert step.context.trace_id == server.context.trace_id
        assert server.start_time <= step.start_time <= step.end_time <= server.end_time  # type: ignore[operator]
    read, decide, submit = (_by_name(spans, name)[0] for name in tracing.SPAN_NAMES)
    assert read.end_time <= decide.start_time and decide.end_time <= submit.start_time  # type: ignore[operator]
    # nothing a visitor or client chose is recorded
    recorded = json.dumps([dict(s.attributes or {}) for s in spans]) + " ".join(s.name for s in spans)
    assert "trace-visitor" not in recorded and "test-delivery-key" not in recorded


def test_other_routes_are_named_by_template_never_by_the_path_as_sent(
    settings: Settings, delivery: dict[str, str], exporter: InMemorySpanExporter
) -> None:
    with TestClient(create_app(settings)) as client:
        ok = client.get("/v1/entries/heroHome", params={"visitor_id": "secret-visitor"}, headers=delivery)
        assert ok.status_code == 200
        assert client.get("/no/such/route").status_code == 404
    servers = [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    assert sorted(s.name for s in servers) == ["GET", "GET /v1/entries/{entry_id}"]
    entry = _by_name(servers, "GET /v1/entries/{entry_id}")[0]
    children = [s for s in exporter.get_finished_spans() if s.parent and s.parent.span_id == entry.context.span_id]
    assert sorted(s.name for s in children) == sorted(tracing.SPAN_NAMES)
    recorded = json.dumps([dict(s.attributes or {}) for s in exporter.get_finished_spans()])
    assert "secret-visitor" not in recorded and "no/such" not in recorded


def test_log_lines_inside_a_request_carry_its_trace_id(
    settings: Settings, delivery: dict[str, str], exporter: InMemorySpanExporter, json_log: io.StringIO
) -> None:
    app = create_app(settings)
    configure_logging("info", "json", json_log)  # as `vary serve` does, after building the app
    install_access_log(app)
    with TestClient(app) as client:
        assert client.post("/v1/personalize", json=BODY, headers=delivery).status_code == 200
    (server,) = [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    (access,) = [line for line in lines if line["logger"] == "vary.access" and line["path"] == "/v1/personalize"]
    assert access["trace_id"] == format(server.context.trace_id, "032x")
    assert access["span_id"] == format(server.context.span_id, "016x")
    outside = [line for line in lines if line["logger"] != "vary.access"]
    assert outside and all("trace_id" not in line for line in outside)  # start-up lines: no span, no id


def test_off_by_default_no_spans_and_no_middleware(
    settings: Settings, delivery: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.current() is None
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.post("/v1/personalize", json=BODY, headers=delivery).status_code == 200
        assert not isinstance(app.asgi_handler, tracing.ServerSpans)
    assert service.span is service.no_span and logging_config.current_trace is None
    assert tracing.current() is None


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "vary"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
    ],
)
def test_which_variables_turn_it_on(env: dict[str, str], on: bool) -> None:
    assert tracing.wanted(env) is on


def test_sdk_disabled_wins_over_an_explicit_exporter() -> None:
    assert tracing.setup_tracing({"OTEL_SDK_DISABLED": "true"}, exporter=InMemorySpanExporter()) is None
    assert tracing.current() is None


def test_otlp_exporter_built_by_the_sdk_from_its_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "vary-eu")
    on = tracing.setup_tracing({"OTEL_TRACES_EXPORTER": "otlp"})
    assert on is not None
    try:
        assert on.provider.resource.attributes["service.name"] == "vary-eu"
        processors = on.provider._active_span_processor._span_processors
        (exporter,) = [p._batch_processor._exporter for p in processors]  # type: ignore[attr-defined]
        assert type(exporter).__name__ == "OTLPSpanExporter"
        assert exporter._endpoint == "http://127.0.0.1:9/v1/traces"
    finally:
        on.shutdown()  # nothing was traced: nothing is sent


def test_an_exporter_that_is_not_installed_is_named() -> None:
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        tracing.setup_tracing({"OTEL_TRACES_EXPORTER": "zipkin"})
