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
    ("event", "field", "says"),
    [
        ({"type": "teleport", "visitor_id": "v"}, "type", "teleport"),
        ({"visitor_id": "v"}, "type", "type"),
        ({"type": "conversion", "visitor_id": "v"}, "goal", "goal"),
        ({"type": "survey", "visitor_id": "v", "metric": "nps", "score": 11}, "score", "0-10"),
        ({"type": "survey", "visitor_id": "v", "metric": "sus", "answers": [3] * 9}, "answers", "length"),
        ({"type": "conversion", "visitor_id": "v", "goal": "g", "value": -5}, "value", ">= 0"),
        ({"type": "conversion", "visitor_id": "v", "goal": "g", "value": 1e300}, "value", "<="),
        ({"type": "page_view"}, "visitor_id", "visitor_id"),
        ({"type": "page_view", "visitor_id": "x" * 300}, "visitor_id", "length"),
        ({"type": "click", "visitor_id": "v", "colour": "red"}, "$", "colour"),
    ],
)
def test_a_bad_event_rejects_only_itself(
    client: TestClient, delivery: dict[str, str], sync_redis, event: dict, field: str, says: str  # noqa: ANN001
) -> None:
    good = {"type": "page_view", "visitor_id": "ok"}
    response = client.post("/v1/events", json={"events": [good, event, good]}, headers=delivery)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    (rejected,) = body["rejected"]
    assert rejected["index"] == 1 and rejected["field"] == field and says in rejected["message"]
    assert sync_redis.xlen("vary:events") == 2


def test_a_batch_of_only_bad_events_is_a_400_and_stores_nothing(
    client: TestClient, delivery: dict[str, str], sync_redis  # noqa: ANN001
) -> None:
    response = client.post("/v1/events", json={"events": [{"type": "nope", "visitor_id": "v"}]}, headers=delivery)
    assert response.status_code == 400 and "rejected" in response.json()["detail"]
    assert response.json()["extra"][0]["key"] == "events[0].type"
    nan = json.dumps({"events": [{"type": "conversion", "visitor_id": "v", "goal": "g", "value": float("nan")}]})
    malformed = client.post("/v1/events", content=nan.encode(), headers={**delivery, "content-type": "application/json"})
    assert malformed.status_code == 400 and "malformed" in malformed.text
    assert sync_redis.xlen("vary:events") == 0


def test_events_without_analytics_consent_are_acknowledged_not_stored(
    client: TestClient, delivery: dict[str, str], sync_redis  # noqa: ANN001
) -> None:
    events = [{"type": "conversion", "visitor_id": "private", "goal": "signup", "analytics": False}]
    response = client.post("/v1/events", json={"events": events}, headers=delivery)
    assert response.status_code == 202 and response.json()["dropped"] == 1
    assert sync_redis.xlen("vary:events") == 0 and not sync_redis.exists("vary:v:{private}:p")


def test_too_many_events(client: TestClient, delivery: dict[str, str]) -> None:
    events = [{"type": "page_view", "visitor_id": "v"}] * 501
    response = client.post("/v1/events", json={"events": events}, headers=delivery)
    assert response.status_code == 400 and "events" in response.text
