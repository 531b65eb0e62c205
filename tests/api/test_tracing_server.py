"""Tracing turned on the way an operator does it: a real two-worker ``vary serve`` started with only
``OTEL_EXPORTER_OTLP_ENDPOINT`` set sends its spans over OTLP/HTTP (protobuf) to a collector — here a
small HTTP server in the test that decodes the OpenTelemetry protocol's own messages — and every
access-log line carries the trace id of a span the collector received."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from api.tracing import SPAN_NAMES
from tests.api.conftest import ADMIN, DELIVERY
from tests.e2e.servers import VaryProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_SERVER


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: keeps every ``ExportTraceServiceRequest`` POSTed to /v1/traces."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receiver)
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[tuple[dict[str, str], object]]:
        """(resource attributes, span) of everything received."""
        found = []
        for request in list(self.requests):
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found


class _Receiver(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.headers["Content-Type"] == "application/x-protobuf"
        self.server.paths.append(self.path)
        self.server.requests.append(ExportTraceServiceRequest.FromString(body))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_real_server_exports_its_spans_over_otlp(tmp_path: Path, collector: Collector) -> None:
    env = {
        "VARY_WORKERS": "2", "VARY_DELIVERY_KEYS": DELIVERY, "VARY_ADMIN_KEYS": ADMIN, "VARY_LOG_FORMAT": "json",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,  # the only variable an operator must set
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # the SDK's batching variable: export within 0.2 s
    }
    server = VaryProcess(env, tmp_path / "data")
    requests = 8
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.base, timeout=10) as http:
            for i in range(requests):  # new connections: spread over both workers
                body = {"visitor": {"id": f"otlp-visitor-{i}"}, "entries": ["heroHome"]}
                answer = http.post("/v1/personalize", json=body, headers={"Authorization": f"Bearer {DELIVERY}"})
                assert answer.status_code == 200
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sum(
            1 for _, s in collector.spans() if s.kind == SERVER_KIND and s.name == "POST /v1/personalize"  # type: ignore[attr-defined]
        ) < requests:
            time.sleep(0.1)
    finally:
        assert server.stop() == 0
    assert set(collector.paths) == {"/v1/traces"}  # the SDK appended the signal's path itself
    spans = collector.spans()
    assert {resource["service.name"] for resource, _ in spans} == {"vary"}
    servers = [s for _, s in spans if s.kind == SERVER_KIND and s.name == "POST /v1/personalize"]  # type: ignore[attr-defined]
    assert len(servers) == requests
    for root in servers:
        children = sorted(s.name for _, s in spans if s.parent_span_id == root.span_id)  # type: ignore[attr-defined]
        assert children == sorted(SPAN_NAMES)
    access = [json.loads(line) for line in server.log if '"vary.access"' in line]
    personalize = [r for r in access if r.get("path") == "/v1/personalize"]
    assert len(personalize) == requests
    assert {r["trace_id"] for r in personalize} == {root.trace_id.hex() for root in servers}  # type: ignore[attr-defined]
    assert "otlp-visitor" not in json.dumps([str(s) for _, s in spans])
