"""The lean path answers ``POST /v1/events`` exactly as Litestar does (api/http/hot_path.py).

Two apps over the same real Valkey (each on its own database) and demo content — one with the lean
path, one with ``hot_path=False`` — get the same requests in the same order, and every answer must
match: status, content type and body. What they stored must match too (the events stream, counted
by type). Requests the lean path hands over (bad keys, bodies its decoder refuses) are counted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import redis
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from personalization.store.identity import sign_identity
from tests.api.conftest import ADMIN, DELIVERY
from tests.api.http.test_hot_path import post_case, summary

SECRET = "identity-secret-shared-with-the-customer-backend"
CONVERSION = {"type": "conversion", "visitor_id": "ev-1", "goal": "purchase", "value": 30.0, "currency": "EUR"}


def _token(user_id: str) -> str:
    return sign_identity(SECRET, user_id, int(time.time() + 600))


@pytest.fixture
def both(settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    with_secret = msgspec.structs.replace(settings, identity_secret=SECRET)
    lean = create_app(msgspec.structs.replace(with_secret, redis_url=f"{settings.redis_url.rstrip('/')}/8"))
    framework = create_app(
        msgspec.structs.replace(with_secret, redis_url=f"{settings.redis_url.rstrip('/')}/9", hot_path=False)
    )
    with TestClient(lean) as a, TestClient(framework) as b:
        yield a, b


def _answer(client: TestClient, case: dict[str, Any]) -> tuple[int, str, Any]:
    return summary(post_case(client, "/v1/events", case))


CASES: list[tuple[str, dict[str, Any]]] = [
    ("one conversion", {"body": {"events": [CONVERSION]}}),
    ("every kind", {"body": {"events": [
        {"type": "page_view", "visitor_id": "ev-2", "page": "/sofas"},
        {"type": "click", "visitor_id": "ev-2", "target": "hero"},
        {"type": "task", "visitor_id": "ev-2", "name": "checkout", "success": True, "duration_ms": 5400},
        {"type": "abandonment", "visitor_id": "ev-2", "task": "checkout", "step": "payment"},
        {"type": "survey", "visitor_id": "ev-2", "metric": "nps", "score": 9},
        {"type": "feedback", "visitor_id": "ev-2", "text": "fine"},
    ]}}),
    ("retried event id", {"body": {"events": [{**CONVERSION, "event_id": "e-1"}, {**CONVERSION, "event_id": "e-1"}]}}),
    ("the same retried batch", {"body": {"events": [{**CONVERSION, "event_id": "e-1"}]}}),
    ("no analytics consent", {"body": {"events": [{**CONVERSION, "analytics": False}]}}),
    ("one bad of two", {"body": {"events": [CONVERSION, {"type": "teleport", "visitor_id": "ev-3"}]}}),
    ("every one bad", {"body": {"events": [{"type": "conversion", "visitor_id": "ev-3", "value": -1}]}}),
    ("proven user id", {"body": {"events": [
        {**CONVERSION, "visitor_id": "ev-4", "user_id": "cust-1", "identity_token": _token("cust-1")}]}}),
    ("unproven user id", {"body": {"events": [{**CONVERSION, "visitor_id": "ev-5", "user_id": "cust-2"}]}}),
    ("user id with the admin key", {"body": {"events": [{**CONVERSION, "visitor_id": "ev-6", "user_id": "cust-3"}]},
                                    "headers": {"Authorization": f"Bearer {ADMIN}"}}),
    ("events not a list", {"body": {"events": {"type": "page_view", "visitor_id": "v"}}}),
    ("no events", {"body": {"events": []}}),
    ("too many events", {"body": {"events": [CONVERSION] * 501}}),
    ("unknown field", {"body": {"events": [CONVERSION], "colour": "red"}}),
    ("not json", {"body": None, "raw": b"{nope"}),
    ("too deep", {"body": None, "raw": b'{"events": [' + b"[" * 200 + b"]" * 200 + b"]}"}),
    ("no key", {"body": {"events": [CONVERSION]}, "headers": {}}),
    ("unknown key", {"body": {"events": [CONVERSION]}, "headers": {"Authorization": "Bearer not-a-key"}}),
    ("key in query", {"body": {"events": [CONVERSION]}, "headers": {}, "params": {"key": DELIVERY}}),
]


def _stored(client: TestClient) -> Counter[str]:
    """The events each app stored, by type and visitor (ids, times and new person ids aside)."""
    sync_redis = redis.Redis.from_url(client.app.state.settings.redis_url, decode_responses=True)
    deadline = time.monotonic() + 5
    stored: Counter[str] = Counter()
    while time.monotonic() < deadline:
        stored = Counter(
            f"{record.get('type')} {_person_blanked(record.get('visitor_id'))}"
            for _, fields in sync_redis.xrange("vary:events")
            for record in [msgspec.json.decode(fields["data"])]
        )
        if stored:
            return stored
        time.sleep(0.05)
    return stored


def _person_blanked(visitor_id: str | None) -> str | None:
    """A person id is new per link (random), so two apps' differ: compared as ``<person>``."""
    return "<person>" if visitor_id and visitor_id.startswith("vp-") else visitor_id


def test_every_case_gets_the_same_answer_and_stores_the_same(both: tuple[TestClient, TestClient]) -> None:
    lean, framework = both
    for name, case in CASES:
        ours, theirs = _answer(lean, case), _answer(framework, case)
        assert ours == theirs, name
        assert ours[0] < 500, (name, ours)
    assert _stored(lean) == _stored(framework) != Counter()


def test_ordinary_batches_take_the_lean_path_and_bad_ones_are_handed_over(both: tuple[TestClient, TestClient]) -> None:
    lean, _ = both
    path = lean.app.state.hot_path
    before = (path.answered, path.handed_over)
    assert _answer(lean, {"body": {"events": [CONVERSION]}})[0] == 202
    assert _answer(lean, {"body": {"events": [{"type": "conversion", "visitor_id": "x", "value": -1}]}})[0] == 400
    assert _answer(lean, {"body": {"events": []}})[0] == 400
    assert _answer(lean, {"body": {"events": [CONVERSION]}, "headers": {}})[0] == 401
    assert (path.answered - before[0], path.handed_over - before[1]) == (1, 2)
