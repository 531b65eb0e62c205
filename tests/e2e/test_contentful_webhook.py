"""Issue 3's end-to-end: two Vary workers follow a Contentful space; a signed webhook makes both
serve a change within 2 seconds. Real processes, the real contentful client, a real Valkey, and a
local Contentful-shaped server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from content import demo_space_path
from content.webhooks import sign_request
from tests.content.contentful_server import DEFAULT_TOKEN, FakeContentful
from tests.content.spaces import entry, set_field
from tests.e2e.servers import VaryProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "s" * 64
DELIVERY = "wh-delivery"
ADMIN = "wh-admin"
AUTH = {"Authorization": f"Bearer {DELIVERY}"}


@pytest.fixture
def space() -> Iterator[FakeContentful]:
    with FakeContentful(json.loads(demo_space_path().read_text()), sync_page_size=5) as server:
        yield server


@pytest.fixture
def workers(space: FakeContentful, redis_url: str, tmp_path: Path) -> Iterator[list[VaryProcess]]:
    env = {
        "VARY_REDIS_URL": redis_url,
        "VARY_CONTENT_SOURCE": "contentful",
        "VARY_CONTENTFUL_SPACE_ID": space.space_id,
        "VARY_CONTENTFUL_ACCESS_TOKEN": DEFAULT_TOKEN,
        "VARY_CONTENTFUL_API_URL": space.api_url,
        "VARY_CONTENTFUL_HTTPS": "false",
        "VARY_CONTENTFUL_WEBHOOK_SECRET": SECRET,
        "VARY_CONTENT_POLL_S": "0",  # webhooks only: the change must arrive through them
        "VARY_DELIVERY_KEYS": DELIVERY,
        "VARY_ADMIN_KEYS": ADMIN,
    }
    procs = [VaryProcess(env, tmp_path / f"w{i}") for i in range(2)]
    try:
        for proc in procs:
            proc.wait_ready()
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def _newsletter(base: str, visitor: str) -> dict:
    body = {"visitor": {"id": visitor, "channel": "web"}, "entries": ["bannerNewsletter"]}
    response = httpx.post(f"{base}/v1/personalize", json=body, headers=AUTH, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["entries"][0]


def _publish_full_rollout(export: dict) -> None:
    """The marketer sends everyone to the discount variant and rewrites its copy."""
    set_field(export, "newsletterCopy", "trafficAllocation", 1.0)
    set_field(export, "newsletterCopy", "weights", [0.0, 1.0])
    set_field(export, "bannerNewsletterDiscount", "text", "Sign up today: 15% off your first order.")
    for entry_id in ("newsletterCopy", "bannerNewsletterDiscount"):
        sys = entry(export, entry_id)["sys"]
        sys["version"] += 2
        sys["publishedVersion"] = sys["version"] - 1


def _webhook(base: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{base}/v1/webhooks/contentful", content=body, headers=headers, timeout=10)


def test_signed_webhook_updates_both_workers_within_two_seconds(
    space: FakeContentful, workers: list[VaryProcess]
) -> None:
    a, b = workers
    versions = {httpx.get(f"{w.base}/ready").json()["content_version"] for w in workers}
    assert len(versions) == 1
    before = [_newsletter(a.base, f"before-{i}") for i in range(20)]
    assert {e["variant"] for e in before} != {1}  # 50% traffic, two arms: not everyone on the discount

    space.mutate(_publish_full_rollout)
    body = json.dumps({"sys": {"id": "newsletterCopy", "type": "Entry",
                               "contentType": {"sys": {"id": "varyExperience"}}}}).encode()
    headers = {
        "content-type": "application/vnd.contentful.management.v1+json",
        "x-contentful-topic": "ContentManagement.Entry.publish",
        "x-contentful-webhook-name": "Vary",
    }

    # Unsigned and badly signed requests change nothing.
    assert _webhook(a.base, body, headers).status_code == 401
    forged = {**headers, **sign_request("wrong" * 13, "POST", "/v1/webhooks/contentful", headers, body,
                                        timestamp_ms=int(time.time() * 1000))}
    assert _webhook(a.base, body, forged).status_code == 401
    assert httpx.get(f"{b.base}/ready").json()["content_version"] in versions

    started = time.monotonic()
    signed = {**headers, **sign_request(SECRET, "POST", "/v1/webhooks/contentful", headers, body,
                                        timestamp_ms=int(time.time() * 1000))}
    response = _webhook(a.base, body, signed)
    assert response.status_code == 200, response.text + a.output()
    assert response.json()["synced"] is True
    new_version = response.json()["content_version"]
    assert new_version not in versions

    seen: dict[str, float] = {}
    while time.monotonic() - started < 2.0 and len(seen) < 2:
        for worker in workers:
            if worker.base in seen:
                continue
            served = _newsletter(worker.base, f"after-{len(seen)}-{time.monotonic()}")
            if served["variant"] == 1 and "15%" in served["fields"]["text"]:
                seen[worker.base] = time.monotonic() - started
        time.sleep(0.02)
    assert set(seen) == {a.base, b.base}, (seen, b.output())
    for worker in workers:
        ready = httpx.get(f"{worker.base}/ready").json()
        assert ready["content_version"] == new_version and ready["content"] == "fresh"
        fresh = [_newsletter(worker.base, f"fresh-{worker.port}-{i}") for i in range(10)]
        # Everyone gets the discount but the demo space's global holdout (5 %: baseline everywhere).
        treated = [e for e in fresh if not e["reason"].startswith("global holdout")]
        assert treated and {e["variant_entry_id"] for e in treated} == {"bannerNewsletterDiscount"}
        assert {e["variant_entry_id"] for e in fresh if e not in treated} <= {"bannerNewsletter"}


def test_restart_while_contentful_is_down_serves_stored_content(
    space: FakeContentful, workers: list[VaryProcess], redis_url: str, tmp_path: Path
) -> None:
    a, _ = workers
    version = httpx.get(f"{a.base}/ready").json()["content_version"]
    space.stop()  # Contentful is gone
    env = {
        "VARY_REDIS_URL": redis_url, "VARY_CONTENT_SOURCE": "contentful",
        "VARY_CONTENTFUL_SPACE_ID": space.space_id, "VARY_CONTENTFUL_ACCESS_TOKEN": DEFAULT_TOKEN,
        "VARY_CONTENTFUL_API_URL": "127.0.0.1:9", "VARY_CONTENTFUL_HTTPS": "false",
        "VARY_CONTENT_POLL_S": "0", "VARY_DELIVERY_KEYS": DELIVERY, "VARY_ADMIN_KEYS": ADMIN,
    }
    late = VaryProcess(env, tmp_path / "late")
    try:
        late.wait_ready()
        ready = httpx.get(f"{late.base}/ready").json()
        assert ready["content"] == "stale" and ready["content_version"] == version
        assert ready["content_sync"]["last_error"]
        assert _newsletter(late.base, "during-outage")["fields"]["text"]
    finally:
        late.stop()
