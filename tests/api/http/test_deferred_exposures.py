"""Deferred exposures: ``"exposures": "on_view"`` logs nothing until ``POST /v1/exposures``, then once."""

from __future__ import annotations

import time

import msgspec
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from personalization.store.keys import profile_key
from personalization.types import EXPOSURE_DECODER, Exposure
from tests.api.conftest import DELIVERY

ENTRIES = ["heroHome", "bannerShipping", "bannerNewsletter"]


def _exposures(sync_redis) -> list[Exposure]:
    return [EXPOSURE_DECODER.decode(f["data"]) for _, f in sync_redis.xrange("vary:exposures")]


def _written_through(client: TestClient, delivery: dict[str, str], sync_redis) -> list[Exposure]:
    """Every exposure queued so far, read once a marker exposure queued after them is in Redis
    (the writer keeps queue order), so "nothing there" is a fact, not a timing guess."""
    marker = client.post(
        "/v1/personalize", json={"visitor": {"id": "marker"}, "entries": ["heroHome"]}, headers=delivery
    ).json()["entries"][0]["exposure_id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = _exposures(sync_redis)
        if any(e.id == marker for e in found):
            return [e for e in found if e.visitor_id != "marker"]
        time.sleep(0.02)
    raise AssertionError("the marker exposure never reached Redis")


def _on_view(client: TestClient, delivery: dict[str, str], visitor: dict[str, object]) -> dict:
    body = {"visitor": visitor, "entries": ENTRIES, "exposures": "on_view"}
    response = client.post("/v1/personalize", json=body, headers=delivery)
    assert response.status_code == 200, response.text
    return response.json()


def test_on_view_logs_no_exposure_until_seen_then_exactly_one_each(
    client: TestClient, delivery: dict[str, str], sync_redis
) -> None:
    decided_at = time.time()
    answer = _on_view(client, delivery, {"id": "viewer-1", "country": "CA", "session_id": "s-1"})
    tokens = [entry["exposure_token"] for entry in answer["entries"]]
    assert all(tokens)
    assert _written_through(client, delivery, sync_redis) == []
    # The decision itself is kept: sticky assignments are stored at decision time.
    assigned = sync_redis.hgetall(profile_key("viewer-1"))
    assert {f"a:{e['experience']}" for e in answer["entries"] if e["experience"]} <= set(assigned)

    # The hero and the banner come into view; the newsletter does not (yet).
    seen = client.post("/v1/exposures", json={"tokens": tokens[:2]}, headers=delivery)
    assert seen.status_code == 202, seen.text
    assert seen.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    recorded = _written_through(client, delivery, sync_redis)
    assert sorted(e.id for e in recorded) == sorted(e["exposure_id"] for e in answer["entries"][:2])
    hero = next(e for e in recorded if e.entry_id == "heroHome")
    served = answer["entries"][0]
    assert (hero.visitor_id, hero.session_id, hero.variant_entry_id, hero.variant, hero.experience) == (
        "viewer-1", "s-1", served["variant_entry_id"], served["variant"], served["experience"],
    )
    assert hero.ts >= decided_at and hero.country == "CA"

    # Sent again (a retried beacon) with the third, the hero twice: each exposure counts once.
    again = client.post("/v1/exposures", json={"tokens": tokens + tokens[:1]}, headers=delivery)
    assert again.status_code == 202
    assert again.json() == {"accepted": 1, "duplicates": 3, "rejected": []}
    recorded = _written_through(client, delivery, sync_redis)
    assert sorted(e.id for e in recorded) == sorted(e["exposure_id"] for e in answer["entries"])
    assert len(recorded) == 3


def test_forged_and_broken_tokens_are_rejected_with_index_and_reason(
    client: TestClient, delivery: dict[str, str], sync_redis
) -> None:
    token = _on_view(client, delivery, {"id": "viewer-2"})["entries"][0]["exposure_token"]
    payload, signature = token.split(".")
    forged = payload[:-3] + ("AAA" if payload[-3:] != "AAA" else "BBB") + "." + signature
    response = client.post(
        "/v1/exposures", json={"tokens": [forged, token, "garbage", token]}, headers=delivery
    )
    assert response.status_code == 202, response.text
    assert response.json() == {
        "accepted": 1,
        "duplicates": 1,
        "rejected": [  # the 4xx vocabulary (key, message) and the older name (reason) for one release
            {"index": 0, "key": "tokens[0]", "message": "bad signature", "reason": "bad signature"},
            {"index": 2, "key": "tokens[2]", "message": "malformed", "reason": "malformed"},
        ],
    }
    recorded = _written_through(client, delivery, sync_redis)
    assert [e.visitor_id for e in recorded] == ["viewer-2"]


def test_a_batch_without_any_valid_token_is_a_400_naming_each(
    client: TestClient, delivery: dict[str, str]
) -> None:
    response = client.post("/v1/exposures", json={"tokens": ["eyJ4IjoxfQ." + "A" * 43, "nonsense"]}, headers=delivery)
    assert response.status_code == 400
    body = response.json()
    assert "no valid exposure token" in body["detail"]
    assert body["extra"] == [
        {"key": "tokens[0]", "message": "bad signature"},
        {"key": "tokens[1]", "message": "malformed"},
    ]
    assert client.post("/v1/exposures", json={"tokens": []}, headers=delivery).status_code == 400
    assert client.post("/v1/exposures", json={"tokens": ["a.b"]}).status_code == 401


def test_tokens_from_another_worker_verify_and_a_foreign_secret_does_not(
    settings: Settings, client: TestClient, delivery: dict[str, str], sync_redis
) -> None:
    token = _on_view(client, delivery, {"id": "viewer-3"})["entries"][0]["exposure_token"]
    # A second worker with the same keys derives the same secret.
    with TestClient(create_app(settings)) as other:
        response = other.post("/v1/exposures", json={"tokens": [token]}, headers=delivery)
        assert response.status_code == 202 and response.json()["accepted"] == 1
    foreign = msgspec.structs.replace(settings, exposure_token_secret="another-deployment-secret-0123456789")
    with TestClient(create_app(foreign)) as stranger:
        response = stranger.post("/v1/exposures", json={"tokens": [token]}, headers=delivery)
        assert response.status_code == 400
        assert response.json()["extra"] == [{"key": "tokens[0]", "message": "bad signature"}]


def test_beacon_form_text_plain_with_the_key_in_the_query(
    client: TestClient, delivery: dict[str, str], sync_redis
) -> None:
    answer = _on_view(client, delivery, {"id": "viewer-4"})
    body = msgspec.json.encode({"tokens": [answer["entries"][2]["exposure_token"]]})
    response = client.post(
        f"/v1/exposures?key={DELIVERY}", content=body, headers={"Content-Type": "text/plain;charset=UTF-8"}
    )
    assert response.status_code == 202 and response.json()["accepted"] == 1
    recorded = _written_through(client, delivery, sync_redis)
    assert [e.entry_id for e in recorded] == ["bannerNewsletter"]


def test_without_analytics_consent_the_token_and_its_exposure_are_anonymous(
    client: TestClient, delivery: dict[str, str], sync_redis
) -> None:
    visitor = {"id": "private-1", "session_id": "s-9", "consent": {"personalization": True, "analytics": False}}
    answer = _on_view(client, delivery, visitor)
    response = client.post(
        "/v1/exposures", json={"tokens": [e["exposure_token"] for e in answer["entries"]]}, headers=delivery
    )
    assert response.json()["accepted"] == 3
    recorded = _written_through(client, delivery, sync_redis)
    assert len(recorded) == 3 and {(e.visitor_id, e.session_id) for e in recorded} == {(None, None)}
    assert sync_redis.exists(profile_key("private-1")) == 0


def test_preview_with_on_view_hands_out_no_tokens(client: TestClient, admin: dict[str, str]) -> None:
    """Previews log nothing, so there is nothing to defer (and without a preview source: 400)."""
    body = {"visitor": {"id": "editor"}, "entries": ["heroHome"], "exposures": "on_view", "preview": True}
    response = client.post("/v1/personalize", json=body, headers=admin)
    assert response.status_code == 400 and "preview" in response.json()["detail"]
