"""Bad input gets a clear 4xx that says what and where — never a 500."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import litestar.exceptions
import pytest
from litestar.exceptions import HTTPException
from litestar.testing import TestClient

from api.http.errors import to_http
from personalization import errors
from personalization.store.keys import profile_key

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
        (b'{"visitor": {"id": "v", "traits": {"a": {"b": {"c": 1}}}}, "entries": ["heroHome"]}', 400, "traits"),  # one level of nesting is a trait (#20); two are not
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
    assert sync_redis.xlen("vary:events") == 0 and not sync_redis.exists(profile_key("private"))


def test_too_many_events(client: TestClient, delivery: dict[str, str]) -> None:
    events = [{"type": "page_view", "visitor_id": "v"}] * 501
    response = client.post("/v1/events", json={"events": events}, headers=delivery)
    assert response.status_code == 400 and "events" in response.text


# -- one error map ------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[3]
#: Where Litestar's HTTP exceptions may be raised: the map and the HTTP-level guards (api/http/errors.py).
HTTP_LEVEL = {
    "api/http/errors.py",
    "api/http/auth.py",
    "api/http/ratelimit.py",
    "api/http/limits.py",
    "api/http/cors.py",
    "api/dashboard/guards.py",
}


def _raised_http_exceptions() -> list[str]:
    """``path:line name`` of every ``raise`` of a Litestar HTTP exception (or a subclass declared in the tree)."""
    names = {
        name for name, kind in vars(litestar.exceptions).items()
        if isinstance(kind, type) and issubclass(kind, HTTPException)
    }
    trees = {
        path.relative_to(ROOT).as_posix(): ast.parse(path.read_text(encoding="utf-8"))
        for package in ("api", "content", "personalization")
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    grew = True
    while grew:  # subclasses of subclasses
        before = len(names)
        for tree in trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and any(
                    (base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)) in names
                    for base in node.bases
                ):
                    names.add(node.name)
        grew = len(names) > before
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
                if name in names:
                    found.append(f"{path}:{node.lineno} {name}")
    return found


def test_framework_http_exceptions_are_raised_only_by_the_error_map_and_the_http_guards() -> None:
    raised = _raised_http_exceptions()
    assert any(hit.startswith("api/http/auth.py:") for hit in raised)  # the scan does see them
    assert [hit for hit in raised if hit.split(":")[0] not in HTTP_LEVEL] == []


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.UnknownEntry.one("e1"), 404),
        (errors.UnknownExperience("x"), 404),
        (errors.UnknownJourney("j"), 404),
        (errors.UnknownModel("v1"), 404),
        (errors.FeatureOff("off"), 404),
        (errors.InvalidPeriod("since"), 400),
        (errors.RejectedBatch("none", problems=[errors.Problem("events[0].type", "bad")]), 400),
        (errors.NotConfigured("preview"), 400),
        (errors.NotAuthenticated("no secret"), 401),
        (errors.NotPermitted("admin only"), 403),
        (errors.Unusable("refused"), 422),
        (errors.ContentNotLoaded(), 503),
        (errors.StorageUnavailable("down", retry_after_s=30), 503),
        (errors.UpstreamFailed("preview failed"), 502),
    ],
)
def test_each_domain_error_has_one_status(error: errors.VaryError, status: int) -> None:
    http = to_http(error)
    assert http.status_code == status and http.detail == str(error)
    assert http.extra == ([{"key": p.key, "message": p.message} for p in error.problems] or None)
    retry = getattr(error, "retry_after_s", None)
    assert http.headers == ({"Retry-After": str(retry)} if retry is not None else None)


def test_every_domain_error_is_in_the_tree_and_exported() -> None:
    declared = {
        name for name, kind in vars(errors).items()
        if isinstance(kind, type) and issubclass(kind, errors.VaryError)
    }
    assert declared <= set(errors.__all__)
    assert all(name in errors.__doc__ for name in declared)  # drawn in the module docstring



def test_events_that_can_be_neither_written_nor_spooled_are_a_503_with_retry_after(
    client: TestClient, delivery: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from personalization.measurement.recorder import EventSpoolFull

    recorder = client.app.state.runtime.events

    async def full(events: object, received_at: float | None = None) -> None:
        raise EventSpoolFull("the events spool is full (10 bytes)")

    monkeypatch.setattr(recorder, "record_or_spool", full)
    batch = {"events": [{"type": "page_view", "visitor_id": "v"}]}
    response = client.post("/v1/events", json=batch, headers=delivery)
    assert response.status_code == 503 and response.headers["retry-after"] == "30"
    assert response.json() == {
        "status_code": 503,
        "detail": "events could not be stored: Redis is unreachable and the events spool is full (10 bytes); "
        "retry with the same event_ids",
    }

    async def refused(events: object, received_at: float | None = None) -> None:
        raise RuntimeError("READONLY")

    monkeypatch.setattr(recorder, "record_or_spool", refused)
    response = client.post("/v1/events", json=batch, headers=delivery)
    assert response.status_code == 503 and "retry-after" not in response.headers
    assert response.json()["detail"] == "events could not be stored (RuntimeError); retry with the same event_ids"
