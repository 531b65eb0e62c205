"""Bad input gets a clear 4xx that says what and where — never a 500."""

from __future__ import annotations

import json

import pytest
from litestar.testing import TestClient

GOOD = {"visitor": {"id": "v1"}, "entries": ["heroHome"]}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "malformed"),
        (b'{"visitor": {"id": 1}, "entries": ["heroHome"]}', 400, "visitor.id"),
        (b'{"visitor": {"id": "v", "colour": "red"}, "entries": ["heroHome"]}', 400, "colour"),
        (b'{"visitor": {"id": "v"}, "entries": []}', 400, "entries"),
        (b'{"visitor": {"id": "' + b"x" * 300 + b'"}, "entries": ["heroHome"]}', 400, "visitor.id"),
        (b'{"visitor": {"id": "v", "channel": "fax"}, "entries": ["heroHome"]}', 400, "channel"),
        (b'{"visitor": {"id": "v", "country": "Germany"}, "entries": ["heroHome"]}', 400, "country"),
        (b'{"visitor": {"id": "v", "traits": {"a": {"b": 1}}}, "entries": ["heroHome"]}', 400, "traits"),
        (b'{"visitor": {"id": "v"}, "entries": ["heroHome", "nope"]}', 404, "entries[1]"),
        (b"[" * 5000 + b"]" * 5000, 400, "nested deeper"),
        (b'{"visitor": {"id": "v", "traits": {"a": ' + b"[" * 100000 + b"}}", 400, "nested deeper"),
        (b'{"visitor": {"id": "v"}, "entries": ["' + b"x" * 2_000_000 + b'"]}', 413, "Too Large"),
    ],
)
def test_personalize_rejects_bad_input(
    client: TestClient, delivery: dict[str, str], body: bytes, status: int, says: str
) -> None:
    response = client.post(
        "/v1/personalize", content=body, headers={**delivery, "content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert says in response.text


def test_keys(client: TestClient, delivery: dict[str, str], admin: dict[str, str]) -> None:
    assert client.post("/v1/personalize", json=GOOD).status_code == 401
    wrong = client.post("/v1/personalize", json=GOOD, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "unknown API key" in wrong.text
    assert client.post("/v1/personalize", json=GOOD, headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.post("/v1/personalize", json=GOOD, headers=admin).status_code == 200
    assert client.get("/v1/experiences", headers=delivery).status_code == 403
    assert client.get("/v1/experiences").status_code == 401


@pytest.mark.parametrize(
    ("event", "where"),
    [
        ({"type": "teleport", "visitor_id": "v"}, "events[0]"),
        ({"type": "conversion", "visitor_id": "v"}, "goal"),
        ({"type": "survey", "visitor_id": "v", "metric": "nps", "score": 11}, "events[0].score"),
        ({"type": "conversion", "visitor_id": "v", "goal": "g", "value": -5}, "value"),
        ({"type": "conversion", "visitor_id": "v", "goal": "g", "value": float("nan")}, "malformed"),
        ({"type": "conversion", "visitor_id": "v", "goal": "g", "value": 1e300}, "value"),
        ({"type": "page_view"}, "visitor_id"),
    ],
)
def test_events_reject_bad_events_and_store_nothing(
    client: TestClient, delivery: dict[str, str], sync_redis, event: dict, where: str  # noqa: ANN001
) -> None:
    good = {"type": "page_view", "visitor_id": "ok"}
    body = json.dumps({"events": [good, event]}).encode()  # allows NaN, as a careless client would
    response = client.post("/v1/events", content=body, headers={**delivery, "content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert where.replace("events[0]", "events[1]") in response.text or where in response.text
    assert sync_redis.xlen("vary:events") == 0


def test_too_many_events(client: TestClient, delivery: dict[str, str]) -> None:
    events = [{"type": "page_view", "visitor_id": "v"}] * 501
    response = client.post("/v1/events", json={"events": events}, headers=delivery)
    assert response.status_code == 400 and "events" in response.text
