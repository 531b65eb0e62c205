"""Visitor ids never appear raw in Vary's logs (``personalization.privacy.hash_id`` stands in)."""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from litestar import Request
from litestar.testing import TestClient

from api.app import create_app
from api.http.errors import internal_error
from api.settings import Settings
from personalization.privacy import AccessLogRedactor, hash_id, redact_path, redact_target
from tests.api.conftest import DELIVERY

VISITOR = "zz-raw-visitor-9d41c7"


def _leaks(caplog: pytest.LogCaptureFixture) -> list[str]:
    out = []
    for record in caplog.records:
        if record.name.startswith("httpx"):
            continue  # the test client's own request log, not the server's
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        if VISITOR in text or VISITOR in str(record.args):
            out.append(f"{record.name}: {text}")
    return out


def test_personalize_events_erase_never_log_the_raw_id(
    client: TestClient, delivery: dict[str, str], admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"visitor": {"id": VISITOR, "country": "US"}, "entries": ["heroHome", "bannerShipping"]}
    assert client.post("/v1/personalize", json=body, headers=delivery).status_code == 200
    assert client.get(f"/v1/entries/heroHome?visitor_id={VISITOR}", headers=delivery).status_code == 200
    events = [
        {"type": "page_view", "visitor_id": VISITOR, "session_id": "s-1", "channel": "web"},
        {"type": "conversion", "visitor_id": VISITOR, "goal": "signup", "event_id": "e-1"},
        {"type": "conversion", "visitor_id": VISITOR, "goal": "signup", "event_id": "e-1"},  # duplicate
        {"type": "nonsense", "visitor_id": VISITOR},  # rejected
    ]
    assert client.post("/v1/events", json={"events": events}, headers=delivery).status_code == 202
    time.sleep(0.5)  # writer and in-process aggregator
    assert client.delete(f"/v1/visitors/{VISITOR}", headers=admin).status_code == 200
    assert caplog.records  # the capture works (startup logs at least)
    assert _leaks(caplog) == []


def test_unhandled_error_log_hashes_the_visitor_path(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    scope = {"type": "http", "method": "DELETE", "path": f"/v1/visitors/{VISITOR}", "query_string": b"",
             "headers": [], "server": ("t", 80), "scheme": "http", "root_path": "", "app": None}
    internal_error(Request(scope), RuntimeError("boom"))  # type: ignore[arg-type]
    assert _leaks(caplog) == []
    assert hash_id(VISITOR) in caplog.text


def test_hash_id_is_stable_short_and_not_the_id() -> None:
    assert hash_id(VISITOR) == hash_id(VISITOR) != hash_id(VISITOR + "x")
    assert VISITOR not in hash_id(VISITOR) and len(hash_id(VISITOR)) == 14
    assert redact_path(f"/v1/visitors/{VISITOR}") == f"/v1/visitors/{hash_id(VISITOR)}"
    assert redact_path("/v1/personalize") == "/v1/personalize"


def test_uvicorn_access_log_shows_the_hash(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """``create_app`` installs the redactor on ``uvicorn.access`` (``vary serve --access-log``)."""
    access = logging.getLogger("uvicorn.access")
    assert any(isinstance(f, AccessLogRedactor) for f in access.filters)
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    for target in (f"/v1/entries/heroHome?locale=en&visitor_id={VISITOR}", f"/v1/visitors/{VISITOR}"):
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", target, "1.1", 200)
    assert _leaks(caplog) == []
    assert caplog.text.count(hash_id(VISITOR)) == 2


def test_redact_target() -> None:
    assert redact_target(f"/v1/entries/a?visitor_id={VISITOR}&x=1") == f"/v1/entries/a?visitor_id={hash_id(VISITOR)}&x=1"
    assert redact_target("/v1/entries/a?visitor_id=a%20b") == f"/v1/entries/a?visitor_id={hash_id('a b')}"
    assert redact_target("/v1/events") == "/v1/events"


# -- issue #17, item 5: masking after URL-decoding, on the real access log -------------------------


@pytest.fixture
def served(settings: Settings) -> Iterator[str]:
    """The app under a real uvicorn server with its access log on (``vary serve --access-log``);
    ``log_config=None`` so the records reach the test's log capture through the root logger."""
    app = create_app(settings, print_keys=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, access_log=True, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def _get(address: str, target: str, headers: dict[str, str] | None = None) -> int:
    """A GET of ``target`` sent byte for byte as written (no client re-encodes the query)."""
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", target, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_encoded_query_names_are_masked_in_the_real_access_log(
    served: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    session = f"sess-{VISITOR}"
    targets = [
        f"/v1/entries/heroHome?%6Bey={DELIVERY}&visitor%5Fid={VISITOR}",  # %6B is k, %5F is _
        f"/v1/entries/heroHome?key={DELIVERY}&session_id={session}&visitor_id={VISITOR}",
        f"/v1/entries/heroHome?k%65y={DELIVERY}&visitor_id={VISITOR}&session%5fid={session}",
        f"/v1/entries/heroHome?%256Bey={DELIVERY}&SESSION_ID={session}&Visitor_ID={VISITOR}",  # any case;
        # %25 decodes to %, so the server reads "%6Bey" (401): masked anyway, names are decoded until stable
    ]
    statuses = [_get(served, target) for target in targets]
    assert statuses[:3] == [200, 200, 200]  # the encoded name authenticates: that is why it must be masked
    access = [r for r in caplog.records if r.name == "uvicorn.access"]
    assert len(access) == len(targets)
    lines = [record.getMessage() for record in access]
    for line in lines:
        assert DELIVERY not in line and VISITOR not in line and session not in line, line
    assert all("***" in line for line in lines)
    assert sum(line.count(hash_id(VISITOR)) for line in lines) == 4
    assert sum(line.count(hash_id(session)) for line in lines) == 3


def test_redact_target_decodes_names_before_matching() -> None:
    key = "vd_secret"
    assert redact_target(f"/v1/e?%6Bey={key}&x=1") == "/v1/e?%6Bey=***&x=1"
    assert redact_target(f"/v1/e?KEY={key}") == "/v1/e?KEY=***"
    assert redact_target(f"/v1/e?ke%79={key}") == "/v1/e?ke%79=***"
    assert redact_target(f"/v1/e?visitor%5Fid={VISITOR}") == f"/v1/e?visitor%5Fid={hash_id(VISITOR)}"
    assert redact_target("/v1/e?session_id=s%201") == f"/v1/e?session_id={hash_id('s 1')}"
    assert redact_target(f"/v1/e?a=1;key={key}") == "/v1/e?a=1;key=***"
    assert redact_target("/v1/e?keys=1&monkey=2&key") == "/v1/e?keys=1&monkey=2&key"  # only the exact name
    assert redact_target("/v1/visitors/a%20b") == f"/v1/visitors/{hash_id('a b')}"  # uvicorn logs it quoted
    assert redact_path(f"/v1/%76isitors/{VISITOR}") == f"/v1/visitors/{hash_id(VISITOR)}"  # routes match decoded
    assert redact_path("/v1/visitors/a%2Fb") == f"/v1/visitors/{hash_id('a/b')}"
