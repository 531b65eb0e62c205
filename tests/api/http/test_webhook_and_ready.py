"""Smaller faults of issue #17, item 10: webhook topic and replays, and what ``/ready`` shows anyone.

* The webhook's ``x-contentful-topic`` decides what Vary does, but Contentful lets the sender choose
  the signed headers: a call whose topic was not signed could be replayed with another topic.
* An exact replay of a signed call inside its 30 s time-to-live was accepted again.
* ``/ready`` answers without a key and showed the content source's absolute file path.
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
from content.coordinator import WEBHOOK_SEEN_PREFIX, WEBHOOK_TTL_S
from content.webhooks import sign_request
from tests.api.conftest import ADMIN, DELIVERY

SECRET = "r" * 64
PATH = "/v1/webhooks/contentful"
BODY = json.dumps({"sys": {"id": "bannerShippingFast", "type": "Entry"}}).encode()
SAVE = {
    "content-type": "application/vnd.contentful.management.v1+json",
    "x-contentful-topic": "ContentManagement.Entry.auto_save",
}


@pytest.fixture
def hooked(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(msgspec.structs.replace(settings, contentful_webhook_secret=SECRET))) as client:
        assert client.get("/ready").status_code == 200
        yield client


def _signed(headers: dict[str, str], signed_headers: list[str] | None = None) -> dict[str, str]:
    stamp = int(time.time() * 1000)
    return {**headers, **sign_request(SECRET, "POST", PATH, headers, BODY, stamp, signed_headers=signed_headers)}


def test_an_exact_replay_inside_the_ttl_is_refused(hooked: TestClient, sync_redis: redis.Redis) -> None:
    headers = _signed(SAVE)
    first = hooked.post(PATH, content=BODY, headers=headers)
    assert first.status_code == 200 and first.json()["topic"] == "ContentManagement.Entry.auto_save"
    seen = WEBHOOK_SEEN_PREFIX + headers["x-contentful-signature"]
    assert 0 < sync_redis.ttl(seen) <= 2 * WEBHOOK_TTL_S  # remembered while the signature could verify
    replay = hooked.post(PATH, content=BODY, headers=headers)
    assert replay.status_code == 401 and "replay" in replay.json()["detail"]
    time.sleep(0.002)
    fresh = hooked.post(PATH, content=BODY, headers=_signed(SAVE))  # Contentful's next call: a new timestamp
    assert fresh.status_code == 200


def test_a_refused_call_is_not_remembered(hooked: TestClient, sync_redis: redis.Redis) -> None:
    forged = {**SAVE, **sign_request("x" * 64, "POST", PATH, SAVE, BODY, int(time.time() * 1000))}
    assert hooked.post(PATH, content=BODY, headers=forged).status_code == 401
    assert not sync_redis.keys(WEBHOOK_SEEN_PREFIX + "*")  # unsigned junk cannot fill Redis


def test_the_topic_must_be_signed(hooked: TestClient) -> None:
    """A draft save signed without its topic, replayed as a publish: the signature alone still verifies."""
    unsigned_topic = _signed(SAVE, signed_headers=["content-type"])
    as_publish = {**unsigned_topic, "x-contentful-topic": "ContentManagement.Entry.publish"}
    for headers in (unsigned_topic, as_publish):
        response = hooked.post(PATH, content=BODY, headers=headers)
        assert response.status_code == 401, response.text
        assert "signed headers must include x-contentful-topic" in response.json()["detail"]


def test_ready_shows_the_source_path_only_to_an_admin_key(hooked: TestClient) -> None:
    admin_view = hooked.get("/ready", headers={"Authorization": f"Bearer {ADMIN}"}).json()["content_sync"]["source"]
    assert "/" in admin_view  # the file source's absolute path, for the operator
    for headers in ({}, {"Authorization": f"Bearer {DELIVERY}"}, {"Authorization": "Bearer wrong"}):
        ready = hooked.get("/ready", headers=headers)
        assert ready.status_code == 200
        source = ready.json()["content_sync"]["source"]
        assert "/" not in source and source == admin_view.split("(", 1)[0], source
