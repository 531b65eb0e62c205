"""A corpus of bad input against every write path: each is a 4xx with a message, and nothing is stored.

Malformed JSON, wrong types, over-long ids, 100k-character strings, deep nesting, unicode edge cases
(lone surrogates, RTL overrides, NUL), negative/NaN/Infinity numbers, a 10 MB body and unknown event
types, sent to ``POST /v1/personalize``, ``GET /v1/entries/{id}``, ``POST /v1/events``,
``PUT /v1/models/active`` and ``POST /v1/webhooks/contentful`` (signed, so the payload is read).
After each, ``vary:events`` and ``vary:exposures`` have the same length and Redis has the same keys.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import msgspec
import pytest
import redis
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from content.webhooks import sign_request
from personalization.store.writer_marks import WRITER_MARKS

SECRET = "s" * 64
HUGE = "x" * 100_000
DEEP_ARRAY = "[" * 200 + "]" * 200
DEEP_OBJECT = '{"a":' * 200 + "1" + "}" * 200
TEN_MB = b'{"visitor": {"id": "v"}, "entries": ["' + b"x" * 10_000_000 + b'"]}'

# Bodies that are bad for every JSON endpoint.
COMMON: list[tuple[str, bytes]] = [
    ("malformed", b"{not json"),
    ("truncated", b'{"visitor": {"id": "v"'),
    ("empty", b""),
    ("invalid-utf8", b'{"visitor": {"id": "\xff\xfe"}}'),
    ("top-level-array", b"[]"),
    ("top-level-string", b'"hello"'),
    ("top-level-null", b"null"),
    ("deep-array", DEEP_ARRAY.encode()),
    ("deep-object", DEEP_OBJECT.encode()),
    ("nan", b'{"x": NaN}'),
    ("infinity", b'{"x": Infinity}'),
    ("ten-mb", TEN_MB),
]

PERSONALIZE: list[tuple[str, object]] = [
    ("id-int", {"visitor": {"id": 1}, "entries": ["heroHome"]}),
    ("entries-string", {"visitor": {"id": "v"}, "entries": "heroHome"}),
    ("entries-obj", {"visitor": {"id": "v"}, "entries": {"heroHome": 1}}),
    ("visitor-list", {"visitor": ["v"], "entries": ["heroHome"]}),
    ("preview-string", {"visitor": {"id": "v"}, "entries": ["heroHome"], "preview": "yes"}),
    ("id-300", {"visitor": {"id": "v" * 300}, "entries": ["heroHome"]}),
    ("entry-300", {"visitor": {"id": "v"}, "entries": ["e" * 300]}),
    ("id-100k", {"visitor": {"id": HUGE}, "entries": ["heroHome"]}),
    ("trait-100k", {"visitor": {"id": "v", "traits": {"t": HUGE}}, "entries": ["heroHome"]}),
    ("locale-100k", {"visitor": {"id": "v"}, "entries": ["heroHome"], "locale": HUGE}),
    ("too-many-entries", {"visitor": {"id": "v"}, "entries": ["heroHome"] * 51}),
    ("trait-nested-list", {"visitor": {"id": "v", "traits": {"t": [[[1]]]}}, "entries": ["heroHome"]}),
    ("entry-lone-surrogate", {"visitor": {"id": "v"}, "entries": ["\ud800"]}),
    ("entry-rtl", {"visitor": {"id": "v"}, "entries": ["\u202eemoHoreh"]}),
    ("entry-nul", {"visitor": {"id": "v"}, "entries": ["hero\u0000Home"]}),
    ("entry-emoji", {"visitor": {"id": "v"}, "entries": ["\U0001f600"]}),
    ("country-emoji", {"visitor": {"id": "v", "country": "\U0001f1fa\U0001f1f8"}, "entries": ["heroHome"]}),
    ("locale-rtl", {"visitor": {"id": "v"}, "entries": ["heroHome"], "locale": "en-\u202eUS"}),
    ("channel-nul", {"visitor": {"id": "v", "channel": "web\u0000"}, "entries": ["heroHome"]}),
    ("unknown-field", {"visitor": {"id": "v"}, "entries": ["heroHome"], "debug": True}),
]

EVENTS: list[tuple[str, object]] = [
    ("events-object", {"events": {"type": "page_view", "visitor_id": "v"}}),
    ("events-empty", {"events": []}),
    ("events-strings", {"events": ["page_view"]}),
    ("unknown-type", {"events": [{"type": "teleport", "visitor_id": "v"}]}),
    ("type-int", {"events": [{"type": 3, "visitor_id": "v"}]}),
    ("type-100k", {"events": [{"type": HUGE, "visitor_id": "v"}]}),
    ("type-rtl", {"events": [{"type": "\u202eweiv_egap", "visitor_id": "v"}]}),
    ("type-nul", {"events": [{"type": "page_view\u0000", "visitor_id": "v"}]}),
    ("type-lone-surrogate", {"events": [{"type": "\udfff", "visitor_id": "v"}]}),
    ("type-emoji", {"events": [{"type": "\U0001f4a5", "visitor_id": "v"}]}),
    ("visitor-300", {"events": [{"type": "page_view", "visitor_id": "v" * 300}]}),
    ("visitor-100k", {"events": [{"type": "page_view", "visitor_id": HUGE}]}),
    ("visitor-int", {"events": [{"type": "page_view", "visitor_id": 7}]}),
    ("negative-value", {"events": [{"type": "conversion", "visitor_id": "v", "goal": "g", "value": -1}]}),
    ("huge-value", {"events": [{"type": "conversion", "visitor_id": "v", "goal": "g", "value": 1e308}]}),
    ("value-string", {"events": [{"type": "conversion", "visitor_id": "v", "goal": "g", "value": "ten"}]}),
    ("negative-score", {"events": [{"type": "survey", "visitor_id": "v", "metric": "nps", "score": -3}]}),
    ("deep-event", {"events": [json.loads(DEEP_OBJECT[: 5 * 60] + "1" + "}" * 60)]}),
    ("too-many", {"events": [{"type": "page_view", "visitor_id": "v"}] * 501}),
]
EVENTS_RAW: list[tuple[str, bytes]] = [
    ("nan-value", b'{"events": [{"type": "conversion", "visitor_id": "v", "goal": "g", "value": NaN}]}'),
    ("inf-value", b'{"events": [{"type": "conversion", "visitor_id": "v", "goal": "g", "value": Infinity}]}'),
    ("neg-inf-value", b'{"events": [{"type": "conversion", "visitor_id": "v", "goal": "g", "value": -Infinity}]}'),
]

MODELS: list[tuple[str, object]] = [
    ("version-int", {"version": 1}),
    ("version-empty", {"version": ""}),
    ("version-300", {"version": "v" * 300}),
    ("version-100k", {"version": HUGE}),
    ("version-list", {"version": ["a"]}),
    ("version-unknown", {"version": "no-such-model"}),
    ("version-lone-surrogate", {"version": "\ud800"}),
    ("version-rtl", {"version": "\u202e1v"}),
    ("version-nul", {"version": "\u0000"}),
    ("version-emoji", {"version": "\U0001f916"}),
    ("version-nan", {"version": float("nan")}),
    ("version-negative", {"version": -1}),
    ("unknown-field", {"version": "x", "force": True}),
]

WEBHOOK: list[tuple[str, object]] = [
    ("no-sys", {"id": "x"}),
    ("sys-string", {"sys": "x"}),
    ("sys-id-int", {"sys": {"id": 5}}),
    ("sys-id-empty", {"sys": {"id": ""}}),
    ("sys-id-nul", {"sys": "\u0000"}),
    ("array", [{"sys": {"id": "x"}}]),
]


def _dump(body: object) -> bytes:
    """JSON as a client would send it; NaN/Infinity and lone surrogates kept as written."""
    return json.dumps(body, ensure_ascii=True, allow_nan=True).encode()


@pytest.fixture
def hooked(settings: Settings) -> Iterator[TestClient]:
    """The app with a webhook secret, so signed bodies reach the payload parser."""
    hooked_settings = msgspec.structs.replace(settings, contentful_webhook_secret=SECRET)
    with TestClient(create_app(hooked_settings)) as test_client:
        assert test_client.get("/ready").status_code == 200
        yield test_client


def _state(store: redis.Redis) -> tuple[int, int, set[str], dict[str, str]]:
    active = store.hgetall("vary:models:active")
    # Rate-limit counters and the exposure writers' marks (renewed every second) are not data.
    keys = {k for k in store.keys("*") if not k.startswith(("vary:rl:", WRITER_MARKS))}
    return store.xlen("vary:events"), store.xlen("vary:exposures"), keys, active


def _assert_rejected(response, store: redis.Redis, before) -> None:  # noqa: ANN001
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    body = response.json()
    detail = body.get("detail")
    assert isinstance(detail, str) and detail.strip(), response.text[:500]
    time.sleep(0.02)  # give a (wrongly) queued exposure a chance to reach Redis
    assert _state(store) == before


def _post(client: TestClient, path: str, body: bytes, headers: dict[str, str]):  # noqa: ANN202
    return client.post(path, content=body, headers={**headers, "content-type": "application/json"})


@pytest.mark.parametrize(("name", "body"), COMMON + [pytest.param(p.values[0], _dump(p.values[1]), marks=p.marks) if isinstance(p, type(pytest.param(1))) else (p[0], _dump(p[1])) for p in PERSONALIZE], ids=lambda v: v if isinstance(v, str) else "")
def test_personalize(hooked: TestClient, delivery: dict[str, str], sync_redis: redis.Redis, name: str, body: bytes) -> None:
    before = _state(sync_redis)
    _assert_rejected(_post(hooked, "/v1/personalize", body, delivery), sync_redis, before)


@pytest.mark.parametrize(
    ("entry_id", "query"),
    [
        ("heroHome", {}),  # visitor_id missing
        ("heroHome", {"visitor_id": ""}),
        ("heroHome", {"visitor_id": "v" * 300}),
        ("heroHome", {"visitor_id": "v" * 5000}),
        ("heroHome", {"visitor_id": "v", "channel": "fax"}),
        ("heroHome", {"visitor_id": "v", "country": "\U0001f1fa\U0001f1f8"}),
        ("heroHome", {"visitor_id": "v", "consent_analytics": "maybe"}),
        ("heroHome", {"visitor_id": "v", "preview": "-1"}),
        ("heroHome", {"visitor_id": "v", "locale": "x" * 100}),
        ("e" * 300, {"visitor_id": "v"}),
        ("nope", {"visitor_id": "v"}),
        ("\u202eemoHoreh", {"visitor_id": "v"}),
        ("hero%00Home", {"visitor_id": "v"}),
        ("%ED%A0%80", {"visitor_id": "v"}),  # a lone surrogate, UTF-8 encoded
        ("%F0%9F%98%80", {"visitor_id": "v"}),
    ],
)
def test_entry(hooked: TestClient, delivery: dict[str, str], sync_redis: redis.Redis, entry_id: str, query: dict) -> None:
    before = _state(sync_redis)
    _assert_rejected(hooked.get(f"/v1/entries/{entry_id}", params=query, headers=delivery), sync_redis, before)


@pytest.mark.parametrize(("name", "body"), COMMON + [(n, _dump(b)) for n, b in EVENTS] + EVENTS_RAW, ids=lambda v: v if isinstance(v, str) else "")
def test_events(hooked: TestClient, delivery: dict[str, str], sync_redis: redis.Redis, name: str, body: bytes) -> None:
    before = _state(sync_redis)
    _assert_rejected(_post(hooked, "/v1/events", body, delivery), sync_redis, before)


@pytest.mark.parametrize(("name", "body"), COMMON + [(n, _dump(b)) for n, b in MODELS], ids=lambda v: v if isinstance(v, str) else "")
def test_models_active(hooked: TestClient, admin: dict[str, str], sync_redis: redis.Redis, name: str, body: bytes) -> None:
    before = _state(sync_redis)
    response = hooked.put("/v1/models/active", content=body, headers={**admin, "content-type": "application/json"})
    _assert_rejected(response, sync_redis, before)


@pytest.mark.parametrize(("name", "body"), COMMON + [(n, _dump(b)) for n, b in WEBHOOK], ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("topic", ["ContentManagement.Entry.publish", "ContentManagement.Entry", "nope"])
def test_webhook_signed(hooked: TestClient, sync_redis: redis.Redis, name: str, body: bytes, topic: str) -> None:
    headers = {"content-type": "application/vnd.contentful.management.v1+json", "x-contentful-topic": topic}
    signed = sign_request(SECRET, "POST", "/v1/webhooks/contentful", headers, body, timestamp_ms=int(time.time() * 1000))
    before = _state(sync_redis)
    response = hooked.post("/v1/webhooks/contentful", content=body, headers={**headers, **signed})
    _assert_rejected(response, sync_redis, before)


@pytest.mark.parametrize(("name", "body"), COMMON[:3] + [("valid", b'{"sys": {"id": "heroHome"}}')], ids=lambda v: v if isinstance(v, str) else "")
def test_webhook_unsigned(hooked: TestClient, sync_redis: redis.Redis, name: str, body: bytes) -> None:
    before = _state(sync_redis)
    headers = {"content-type": "application/json", "x-contentful-topic": "ContentManagement.Entry.publish"}
    _assert_rejected(hooked.post("/v1/webhooks/contentful", content=body, headers=headers), sync_redis, before)


@pytest.mark.parametrize(
    "visitor_id", ["\ud800", "\u202eevil", "nul\u0000id", "\U0001f600", "\ufeff", "a\u0301" * 100, "\U0010ffff"]
)
def test_unicode_visitor_ids_never_5xx(hooked: TestClient, delivery: dict[str, str], visitor_id: str) -> None:
    """Unicode edge cases in a *free-text* id may be legitimate: they are served or refused, never a 5xx."""
    body = _dump({"visitor": {"id": visitor_id}, "entries": ["heroHome"]})
    response = _post(hooked, "/v1/personalize", body, delivery)
    assert response.status_code in (200, 400), (response.status_code, response.text[:500])
    events = _dump({"events": [{"type": "page_view", "visitor_id": visitor_id}]})
    response = _post(hooked, "/v1/events", events, delivery)
    assert response.status_code in (202, 400), (response.status_code, response.text[:500])
