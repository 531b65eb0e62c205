"""Content routes over a live (local) Contentful: webhooks, preview, content issues, /ready."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from content import demo_space_path
from content.webhooks import sign_request
from tests.api.conftest import ADMIN, DELIVERY
from tests.content.contentful_server import (
    DEFAULT_PREVIEW_TOKEN,
    DEFAULT_TOKEN,
    FakeContentful,
)
from tests.content.spaces import set_field

SECRET = "w" * 64
HEADERS = {
    "content-type": "application/vnd.contentful.management.v1+json",
    "x-contentful-topic": "ContentManagement.Entry.publish",
}
BODY = json.dumps({"sys": {"id": "bannerShippingFast", "type": "Entry"}}).encode()


@pytest.fixture
def space() -> Iterator[FakeContentful]:
    with FakeContentful(json.loads(demo_space_path().read_text()), sync_page_size=4) as server:
        yield server


@pytest.fixture
def live(space: FakeContentful, settings: Settings) -> Iterator[TestClient]:
    live_settings = msgspec.structs.replace(
        settings,
        content_source="contentful",
        contentful_space_id=space.space_id,
        contentful_access_token=DEFAULT_TOKEN,
        contentful_preview_token=DEFAULT_PREVIEW_TOKEN,
        contentful_api_url=space.api_url,
        contentful_preview_api_url=space.api_url,
        contentful_https=False,
        contentful_webhook_secret=SECRET,
        content_poll_s=0,
    )
    with TestClient(create_app(live_settings)) as client:
        yield client


def _signed(body: bytes = BODY, headers: dict[str, str] = HEADERS, secret: str = SECRET, age_s: float = 0) -> dict:
    stamp = int((time.time() - age_s) * 1000)
    return {**headers, **sign_request(secret, "POST", "/v1/webhooks/contentful", headers, body, timestamp_ms=stamp)}


def _banner_text(client: TestClient, **extra: object) -> str:
    body = {"visitor": {"id": "fast-fan"}, "entries": ["bannerShipping"], **extra}
    headers = {"Authorization": f"Bearer {ADMIN if extra.get('preview') else DELIVERY}"}
    response = client.post("/v1/personalize", json=body, headers=headers)
    assert response.status_code == 200, response.text
    entry = response.json()["entries"][0]
    return str(entry["variant_entry_id"]) + ":" + entry["fields"]["text"]


def test_webhook_signature_is_required_and_a_valid_one_syncs(live: TestClient, space: FakeContentful) -> None:
    before = live.get("/ready").json()
    assert before["content"] == "fresh" and before["content_sync"]["syncs"] == 1
    space.mutate(lambda e: set_field(e, "bannerShippingFast", "text", "Tomorrow, or it is free."))
    refused = [
        live.post("/v1/webhooks/contentful", content=BODY, headers=HEADERS),  # unsigned
        live.post("/v1/webhooks/contentful", content=BODY, headers=_signed(secret="x" * 64)),  # wrong secret
        live.post("/v1/webhooks/contentful", content=BODY, headers=_signed(age_s=31)),  # expired
        live.post("/v1/webhooks/contentful", content=BODY + b" ", headers=_signed()),  # body changed
    ]
    assert [r.status_code for r in refused] == [401] * 4, [r.text for r in refused]
    assert "expired" in refused[2].text or "old" in refused[2].text
    assert live.get("/ready").json()["content_version"] == before["content_version"]

    accepted = live.post("/v1/webhooks/contentful", content=BODY, headers=_signed())
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["synced"] is True and accepted.json()["entity_id"] == "bannerShippingFast"
    after = live.get("/ready").json()
    assert after["content_version"] == accepted.json()["content_version"] != before["content_version"]
    assert after["content_sync"]["last_sync_changes"] == 1


def test_webhook_payload_errors_and_non_content_topics(live: TestClient) -> None:
    bad = live.post("/v1/webhooks/contentful", content=b"not json", headers=_signed(body=b"not json"))
    assert bad.status_code == 400 and "webhook payload" in bad.text
    save = {**HEADERS, "x-contentful-topic": "ContentManagement.Entry.auto_save"}
    response = live.post("/v1/webhooks/contentful", content=BODY, headers=_signed(headers=save))
    assert response.status_code == 200 and response.json()["synced"] is False


def test_preview_shows_drafts_to_admins_only_and_logs_nothing(
    live: TestClient, space: FakeContentful, sync_redis  # noqa: ANN001
) -> None:
    space.draft(lambda e: set_field(e, "bannerShipping", "text", "DRAFT: returns for 60 days"))
    space.draft(lambda e: set_field(e, "bannerShippingFree", "text", "DRAFT: free shipping"))
    space.draft(lambda e: set_field(e, "bannerShippingFast", "text", "DRAFT: next-day"))
    published = _banner_text(live)
    assert "DRAFT" not in published
    preview = _banner_text(live, preview=True)
    assert "DRAFT" in preview and preview.split(":")[0] == published.split(":")[0]  # same decision
    denied = live.post(
        "/v1/personalize",
        json={"visitor": {"id": "v"}, "entries": ["bannerShipping"], "preview": True},
        headers={"Authorization": f"Bearer {DELIVERY}"},
    )
    assert denied.status_code == 403 and "admin" in denied.text
    got = live.get(
        "/v1/entries/bannerShipping",
        params={"visitor_id": "fast-fan", "preview": "true"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert "DRAFT" in got.json()["fields"]["text"]
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and sync_redis.xlen("vary:exposures") < 2:
        time.sleep(0.02)
    exposures = [json.loads(f["data"]) for _, f in sync_redis.xrange("vary:exposures")]
    # the published call's entry, and its global holdout exposure (the demo holds 5 % out globally)
    assert [e["experience"] == "_global" for e in exposures] == [False, True]
    exposures = exposures[:1]
    assert len(exposures) == 1 and exposures[0]["visitor_id"] == "fast-fan"  # only the published call


def test_content_issues_lists_mis_modelled_experiences(live: TestClient, space: FakeContentful) -> None:
    assert live.get("/v1/content/issues", headers={"Authorization": f"Bearer {ADMIN}"}).json()["issues"] == []
    space.mutate(lambda e: set_field(e, "bannerShippingTest", "weights", [0.5, 0.5]))
    assert live.post("/v1/webhooks/contentful", content=BODY, headers=_signed()).status_code == 200
    issues = live.get("/v1/content/issues", headers={"Authorization": f"Bearer {ADMIN}"}).json()["issues"]
    assert [i["entry_id"] for i in issues] == ["bannerShippingTest"]
    assert issues[0]["fix"] and "weights" in issues[0]["problem"]
    assert live.get("/v1/content/issues", headers={"Authorization": f"Bearer {DELIVERY}"}).status_code == 403
    # the mis-modelled experience is skipped: the banner serves its baseline, the rest still works
    served = live.post(
        "/v1/personalize",
        json={"visitor": {"id": "v1"}, "entries": ["bannerShipping", "heroHome"]},
        headers={"Authorization": f"Bearer {DELIVERY}"},
    ).json()["entries"]
    assert served[0]["experience"] is None and served[0]["variant_entry_id"] == "bannerShipping"


def test_preview_is_refused_without_configuration(client: TestClient) -> None:
    response = client.post(
        "/v1/personalize",
        json={"visitor": {"id": "v"}, "entries": ["heroHome"], "preview": True},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 400 and "VARY_CONTENTFUL_PREVIEW_TOKEN" in response.text
    webhook = client.post("/v1/webhooks/contentful", content=BODY, headers=_signed())
    assert webhook.status_code == 401 and "VARY_CONTENTFUL_WEBHOOK_SECRET" in webhook.text


def test_contentful_down_at_start_keeps_stored_content(
    live: TestClient, space: FakeContentful, settings: Settings
) -> None:
    version = live.get("/ready").json()["content_version"]
    revoked = msgspec.structs.replace(
        settings, content_source="contentful", contentful_space_id=space.space_id,
        contentful_access_token="revoked-token", contentful_api_url=space.api_url,
        contentful_https=False, content_poll_s=0,
    )
    with TestClient(create_app(revoked)) as second:
        ready = second.get("/ready").json()
        assert ready["ready"] and ready["content"] == "stale" and ready["content_version"] == version
        assert "401" in ready["content_sync"]["last_error"] or "token" in ready["content_sync"]["last_error"]


def test_content_issues_name_segments_the_model_does_not_score(live: TestClient, space: FakeContentful) -> None:
    space.mutate(lambda e: set_field(e, "priceSensitive", "segment", "price_sensitve"))
    assert live.post("/v1/webhooks/contentful", content=BODY, headers=_signed()).status_code == 200
    issues = live.get("/v1/content/issues", headers={"Authorization": f"Bearer {ADMIN}"}).json()["issues"]
    (issue,) = [i for i in issues if "price_sensitve" in i["problem"]]
    assert issue["entry_id"] == "priceSensitive" and "price_sensitive" in issue["fix"]


def test_experiences_list_each_experience_with_the_entries_it_hangs_on(
    client: TestClient, admin: dict[str, str]
) -> None:
    listed = client.get("/v1/experiences", headers=admin).json()["experiences"]
    snapshot = client.app.state.runtime.snapshot
    expected = {
        key: sorted(e for e in snapshot.entries if key in {x.key for x in snapshot.experiences_for(e)})
        for key in snapshot.experiences
    }
    assert {e["key"]: e["entries"] for e in listed} == expected == snapshot.baselines()
    assert any(entries for entries in expected.values())
