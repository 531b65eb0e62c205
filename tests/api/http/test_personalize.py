"""The API over the real demo space, the real demo model and the real Valkey server."""

from __future__ import annotations

import time

import msgspec
from litestar.testing import TestClient

from personalization.store.keys import profile_key
from personalization.types import EXPOSURE_DECODER


def _exposures(sync_redis) -> list:  # noqa: ANN001
    return [EXPOSURE_DECODER.decode(f["data"]) for _, f in sync_redis.xrange("vary:exposures")]


def _wait_for_exposures(sync_redis, n: int) -> list:  # noqa: ANN001
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        got = _exposures(sync_redis)
        if len(got) >= n:
            return got
        time.sleep(0.02)
    return _exposures(sync_redis)


def test_personalize_returns_variants_with_fields_reasons_and_logs_exposures(
    client: TestClient, delivery: dict[str, str], sync_redis
) -> None:  # noqa: ANN001
    body = {
        "visitor": {"id": "visitor-ca", "country": "CA", "channel": "web"},
        "entries": ["heroHome", "bannerShipping", "bannerNewsletter"],
        "locale": "en-US",
    }
    response = client.post("/v1/personalize", json=body, headers=delivery)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["visitor_id"] == "visitor-ca" and data["locale"] == "en-US"
    assert set(data["segments"]) == {"price_sensitive", "high_intent", "loyal"}
    assert data["model_version"].startswith("seg-") and data["degraded"] is False
    hero, banner, newsletter = data["entries"]
    assert hero["entry_id"] == "heroHome" and hero["content_type"] == "hero"
    assert hero["fields"]["title"] and hero["reason"]
    assert hero["fields"]["image"]["url"].startswith("https://")
    if data["segments"]["price_sensitive"] < 0.6 and not hero["holdout"]:
        assert hero["experience"] == "hero-north-america" and hero["variant_entry_id"] == "heroHomeCanada"
    assert banner["experience"] in {"banner-shipping-test", None}
    assert 0 < banner["propensity"] <= 1
    exposures = _wait_for_exposures(sync_redis, 4)
    # The demo space holds 5 % of visitors out globally: one more exposure, of `_global`, per request.
    (global_exposure,) = [e for e in exposures if e.experience == "_global"]
    assert global_exposure.entry_id == "heroHome" and global_exposure.visitor_id == "visitor-ca"
    exposures = [e for e in exposures if e is not global_exposure]
    assert sorted(e.id for e in exposures) == sorted(e["exposure_id"] for e in data["entries"])
    assert {e.visitor_id for e in exposures} == {"visitor-ca"}


def test_same_visitor_gets_same_variants(client: TestClient, delivery: dict[str, str]) -> None:
    body = {"visitor": {"id": "sticky-1"}, "entries": ["bannerShipping", "bannerNewsletter"]}
    first = client.post("/v1/personalize", json=body, headers=delivery).json()
    second = client.post("/v1/personalize", json=body, headers=delivery).json()
    assert [e["variant"] for e in first["entries"]] == [e["variant"] for e in second["entries"]]
    assert first["entries"][0]["exposure_id"] != second["entries"][0]["exposure_id"]


def test_german_locale_with_fallback(client: TestClient, delivery: dict[str, str]) -> None:
    body = {"visitor": {"id": "v-de", "country": "DE", "locale": "de-DE"}, "entries": ["bannerShipping"]}
    data = client.post("/v1/personalize", json=body, headers=delivery).json()
    assert data["locale"] == "de-DE"
    english = client.post(
        "/v1/personalize", json={**body, "locale": "en-US"}, headers=delivery
    ).json()
    assert data["entries"][0]["variant"] == english["entries"][0]["variant"]
    assert data["entries"][0]["fields"] != english["entries"][0]["fields"]


def test_get_entry(client: TestClient, delivery: dict[str, str]) -> None:
    response = client.get(
        "/v1/entries/heroHome", params={"visitor_id": "v-get", "country": "US", "locale": "de-DE"}, headers=delivery
    )
    assert response.status_code == 200, response.text
    entry = response.json()
    assert entry["entry_id"] == "heroHome" and entry["fields"]["title"] and entry["exposure_id"]
    missing = client.get("/v1/entries/nope", params={"visitor_id": "v"}, headers=delivery)
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_events_update_profile_used_by_next_decision(
    client: TestClient, delivery: dict[str, str], sync_redis
) -> None:  # noqa: ANN001
    events = {
        "events": [
            {"type": "page_view", "visitor_id": "v-ev", "session_id": "s1", "channel": "web", "page": "/pricing"},
            {"type": "conversion", "visitor_id": "v-ev", "goal": "signup", "value": 49.0, "channel": "web",
             "event_id": "conv-1"},
        ]
    }
    response = client.post("/v1/events", json=events, headers=delivery)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2, "duplicates": 0, "dropped": 0, "rejected": [], "spooled": 0}
    again = client.post("/v1/events", json={"events": events["events"][1:]}, headers=delivery)
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 1
    profile = sync_redis.hgetall(profile_key("v-ev"))
    assert profile["page_views"] == "1" and profile["conversions"] == "1" and profile["g:signup"] == "1"
    assert sync_redis.xlen("vary:events") == 2


def test_experiences_list_for_admin(client: TestClient, admin: dict[str, str], delivery: dict[str, str]) -> None:
    response = client.get("/v1/experiences", headers=admin)
    assert response.status_code == 200
    experiences = {e["key"]: e for e in response.json()["experiences"]}
    assert {"hero-sale", "hero-north-america", "banner-shipping-test", "newsletter-copy"} <= set(experiences)
    test = experiences["banner-shipping-test"]
    assert test["entries"] == ["bannerShipping"] and test["type"] == "ab_test"
    assert test["variants"] == ["bannerShippingFree", "bannerShippingFast"] and len(test["weights"]) == 3
    assert experiences["newsletter-copy"]["traffic_allocation"] == 0.5
    assert experiences["hero-sale"]["audience"] == "price_sensitive"
    assert client.get("/v1/experiences", headers=delivery).status_code == 403


def test_health_ready_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] and body["redis"] == "ok" and body["content"] == "fresh"
    assert body["model"].startswith("seg-") and body["content_issues"] == 0
    schema = client.get("/schema/openapi.json").json()
    assert {"/v1/personalize", "/v1/events", "/v1/experiences", "/health", "/ready"} <= set(schema["paths"])
    msgspec.json.encode(schema)  # serialisable
