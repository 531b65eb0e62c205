"""Visitor ids never appear raw in Vary's logs (``personalization.privacy.hash_id`` stands in)."""

from __future__ import annotations

import logging
import time

import pytest
from litestar import Request
from litestar.testing import TestClient

from api.http.errors import internal_error
from personalization.privacy import AccessLogRedactor, hash_id, redact_path, redact_target

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
