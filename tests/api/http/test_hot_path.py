"""The lean ``POST /v1/personalize`` path (api/http/hot_path.py) answers exactly as Litestar's.

The same requests go to two apps over the same real Valkey and demo content — one with the lean path,
one with ``hot_path=False`` — and every answer must match: status, content type and body (exposure
ids aside, which are unique per decision). Requests the lean path hands over (bad keys, bad bodies,
limits) are counted, so the test also shows which path answered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import redis
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from personalization.store.traits import MAX_TRAITS
from personalization.types import EXPOSURE_DECODER
from tests.api.conftest import ADMIN, DELIVERY

BEARER = {"Authorization": f"Bearer {DELIVERY}"}
BODY = {
    "visitor": {"id": "hot-1", "country": "US", "channel": "web", "traits": {"plan": "plus"}},
    "entries": ["heroHome", "bannerShipping", "bannerNewsletter"],
    "locale": "en-US",
}


@pytest.fixture
def both(settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    """Two apps, each on its own database of the session's Valkey: a request to one leaves no
    profile, assignment or trait the other would read."""
    lean = create_app(msgspec.structs.replace(settings, redis_url=f"{settings.redis_url.rstrip('/')}/1"))
    framework = create_app(msgspec.structs.replace(settings, redis_url=f"{settings.redis_url.rstrip('/')}/2", hot_path=False))
    assert getattr(lean.state, "hot_path", None) is not None and getattr(framework.state, "hot_path", None) is None
    with TestClient(lean) as a, TestClient(framework) as b:
        yield a, b


def _without_ids(value: Any) -> Any:
    """The answer with per-decision ids and the tokens that sign them blanked (each decision gets new ones)."""
    if isinstance(value, dict):
        return {k: ("<id>" if k in ("exposure_id", "exposure_token") else _without_ids(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def post_case(client: httpx.Client, path: str, case: dict[str, Any]) -> httpx.Response:
    """One test case posted to ``path`` (any httpx client: a Litestar ``TestClient`` or a real server's):
    ``body`` as JSON or ``raw`` bytes, ``headers`` (``None``: the delivery key), ``params``. Shared by
    the lean-path tests of both routes and the direct path's (tests/api/test_server_direct.py)."""
    headers = dict(BEARER if case.get("headers") is None else case["headers"])
    if case.get("raw") is not None:
        return client.post(path, content=case["raw"], params=case.get("params"),
                           headers={"content-type": "application/json", **headers})
    return client.post(path, json=case["body"], params=case.get("params"), headers=headers)


def summary(response: httpx.Response) -> tuple[int, str, Any]:
    """Status, content type and the body as JSON (as text when it is not JSON)."""
    try:
        data: Any = response.json()
    except json.JSONDecodeError:
        data = response.text
    return response.status_code, response.headers.get("content-type", ""), data


def _answer(client: TestClient, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None,
            params: dict[str, str] | None = None) -> tuple[int, str, Any]:
    """One request: ``headers`` None = the delivery key; ``raw``: these bytes as the body."""
    status, content_type, data = summary(
        post_case(client, "/v1/personalize", {"body": body, "headers": headers, "raw": raw, "params": params})
    )
    return status, content_type, _without_ids(data)


CASES: list[tuple[str, dict[str, Any]]] = [
    ("ordinary", {"body": BODY}),
    ("cda format", {"body": {**BODY, "format": "cda"}}),
    ("custom flags", {"body": {**BODY, "flags": True}}),
    ("repeated entry", {"body": {**BODY, "entries": ["heroHome", "heroHome", "bannerShipping"]}}),
    ("on view exposures", {"body": {**BODY, "exposures": "on_view"}}),
    ("no consent", {"body": {**BODY, "visitor": {"id": "hot-2", "consent": {"personalization": False}}}}),
    ("unknown entry", {"body": {**BODY, "entries": ["heroHome", "nope"]}}),
    ("unknown field", {"body": {**BODY, "colour": "red"}}),
    ("wrong type", {"body": {**BODY, "entries": "heroHome"}}),
    ("empty entries", {"body": {**BODY, "entries": []}}),
    ("not json", {"body": None, "raw": b"{nope"}),
    ("not utf-8", {"body": None, "raw": b'{"visitor": {"id": "\xff"}}'}),
    ("too deep", {"body": None, "raw": b"[" * 200 + b"]" * 200}),
    ("no key", {"body": BODY, "headers": {}}),
    ("unknown key", {"body": BODY, "headers": {"Authorization": "Bearer not-a-key"}}),
    ("not bearer", {"body": BODY, "headers": {"Authorization": f"Basic {DELIVERY}"}}),
    ("key in query", {"body": BODY, "headers": {}, "params": {"key": DELIVERY}}),
    ("admin key", {"body": BODY, "headers": {"Authorization": f"Bearer {ADMIN}"}}),
    ("preview with a delivery key", {"body": {**BODY, "preview": True}}),
    ("traits over their bound", {"body": {**BODY, "visitor": {"id": "hot-3", "traits": {
        f"t{i}": i for i in range(MAX_TRAITS + 1)}}}}),
]


@pytest.mark.parametrize(("name", "case"), CASES, ids=[name for name, _ in CASES])
def test_both_paths_answer_the_same(both: tuple[TestClient, TestClient], name: str, case: dict[str, Any]) -> None:
    lean, framework = both
    ours = _answer(lean, case["body"], case.get("headers"), case.get("raw"), case.get("params"))
    theirs = _answer(framework, case["body"], case.get("headers"), case.get("raw"), case.get("params"))
    assert ours == theirs
    assert ours[0] < 500, ours


def test_ordinary_requests_take_the_lean_path_and_bad_ones_are_handed_over(
    both: tuple[TestClient, TestClient],
) -> None:
    lean, _ = both
    path = lean.app.state.hot_path
    before = (path.answered, path.handed_over)
    assert _answer(lean, BODY)[0] == 200
    assert _answer(lean, {**BODY, "entries": "x"})[0] == 400
    assert _answer(lean, BODY, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert (path.answered - before[0], path.handed_over - before[1]) == (1, 2)


def test_an_oversized_body_gets_the_same_413_declared_or_chunked(settings: Settings) -> None:
    small = msgspec.structs.replace(settings, max_body_bytes=2_000)
    big = json.dumps({**BODY, "visitor": {"id": "x" * 100, "page": "/" + "p" * 3_000}}).encode()

    def chunks() -> Iterator[bytes]:  # no content-length: a chunked upload
        for start in range(0, len(big), 500):
            yield big[start : start + 500]

    answers = []
    for hot in (True, False):
        with TestClient(create_app(msgspec.structs.replace(small, hot_path=hot))) as client:
            declared = client.post("/v1/personalize", content=big, headers={**BEARER, "content-type": "application/json"})
            chunked = client.post("/v1/personalize", content=chunks(), headers={**BEARER, "content-type": "application/json"})
            answers.append([(r.status_code, r.json()) for r in (declared, chunked)])
    assert answers[0] == answers[1]
    assert [status for status, _ in answers[0]] == [413, 413]


def test_each_lean_answer_logs_its_exposures_once(both: tuple[TestClient, TestClient]) -> None:
    lean, _ = both
    sync_redis = redis.Redis.from_url(f"{lean.app.state.settings.redis_url}", decode_responses=True)
    ids = set()
    for i in range(5):
        response = lean.post("/v1/personalize", json={**BODY, "visitor": {"id": f"once-{i}"}}, headers=BEARER)
        assert response.status_code == 200
        ids |= {entry["exposure_id"] for entry in response.json()["entries"]}
    deadline = time.monotonic() + 5
    logged: list[str] = []
    while time.monotonic() < deadline:
        logged = [
            EXPOSURE_DECODER.decode(fields["data"]).id
            for _, fields in sync_redis.xrange("vary:exposures")
            if EXPOSURE_DECODER.decode(fields["data"]).experience != "_global"
        ]
        if len(logged) >= len(ids):
            break
        time.sleep(0.05)
    assert sorted(logged) == sorted(ids)
