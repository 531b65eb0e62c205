"""One person across ids over HTTP: a ``user_id`` needs proof, and a journey that starts anonymous on
the web, continues identified in the app and converts in a store is one person end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from personalization.decision.global_holdout import in_global_holdout
from personalization.store.identity import sign_identity
from personalization.store.keys import person_index_key, profile_key, visitor_key_prefix
from tests.api.conftest import ADMIN, DELIVERY

SECRET = "identity-secret-shared-with-the-customer-backend"
EXPERIENCE, ENTRY = "banner-shipping-test", "bannerShipping"
#: The demo space's global holdout share (content/demo/space.json).
GLOBAL_SHARE = 0.05


@pytest.fixture
def client(redis_url: str, model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        redis_url=redis_url, data_dir=model_dir, delivery_keys=(DELIVERY,), admin_keys=(ADMIN,),
        train_demo_model=False, identity_secret=SECRET,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def token(user_id: str, valid_s: float = 600) -> str:
    return sign_identity(SECRET, user_id, int(time.time() + valid_s))


def wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def stream_visitors(sync_redis: redis.Redis, stream: str) -> list[tuple[str, str]]:
    """(visitor id, type or experience) of every entry of a stream, in order."""
    out = []
    for _, fields in sync_redis.xrange(stream):
        record = msgspec.json.decode(fields["data"])
        out.append((record.get("visitor_id"), record.get("type") or record.get("experience")))
    return out


def test_an_unproven_user_id_is_refused_naming_the_field(
    client: TestClient, delivery: dict[str, str], sync_redis: redis.Redis
) -> None:
    identify = {"type": "identify", "visitor_id": "web-x", "user_id": "cust-victim"}
    cases = [
        ({**identify}, "identity_token"),  # unsigned
        ({**identify, "identity_token": "123.abc"}, "identity_token"),  # badly signed
        ({**identify, "identity_token": token("cust-other")}, "identity_token"),  # another user's token
        ({**identify, "identity_token": token("cust-victim", -10)}, "identity_token"),  # expired
        ({**identify, "user_id": 42}, "user_id"),
        ({"type": "purchase", "user_id": "cust-victim", "value": 10.0}, "identity_token"),  # back office, no proof
        ({"type": "page_view", "visitor_id": "web-x", "identity_token": token("cust-victim")}, "identity_token"),
    ]
    for event, field in cases:
        response = client.post("/v1/events", json={"events": [event]}, headers=delivery)
        assert response.status_code == 400, (event, response.text)
        assert f"events[0].{field}" in response.text, (event, response.text)
    # in a batch, only the unproven event is refused; nothing links
    mixed = [{"type": "page_view", "visitor_id": "web-x", "touchpoint": "home"}, identify]
    response = client.post("/v1/events", json={"events": mixed}, headers=delivery)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 1 and [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "identity_token")]
    assert sync_redis.get(person_index_key("cust-victim")) is None
    assert sync_redis.hget(profile_key("web-x"), "person") is None


def exposed_visitor(client: TestClient, delivery: dict[str, str], prefix: str) -> tuple[str, int]:
    """A web visitor outside the global holdout who enters the experience (not its holdout), and its variant."""
    for i in range(200):
        visitor = f"{prefix}-{i}"
        if in_global_holdout(visitor, GLOBAL_SHARE):
            continue
        body = {"visitor": {"id": visitor, "channel": "web"}, "entries": [ENTRY]}
        response = client.post("/v1/personalize", json=body, headers=delivery)
        assert response.status_code == 200, response.text
        entry = response.json()["entries"][0]
        if entry["experience"] == EXPERIENCE and not entry["holdout"]:
            return visitor, entry["variant"]
    raise AssertionError("no visitor entered the experience")


def test_web_then_app_then_store_is_one_person(
    client: TestClient, delivery: dict[str, str], admin: dict[str, str], sync_redis: redis.Redis
) -> None:
    # the person id is random; fix one outside the global holdout so the test cannot land in it
    person = next(f"vp-test-{i}" for i in range(100) if not in_global_holdout(f"vp-test-{i}", GLOBAL_SHARE))
    sync_redis.set(person_index_key("cust-7"), person)
    web, variant = exposed_visitor(client, delivery, "web-anon")
    wait_until(lambda: sync_redis.hget(profile_key(web), f"a:{EXPERIENCE}") is not None, "sticky assignment")
    events = [{"type": "page_view", "visitor_id": web, "channel": "web", "touchpoint": "home"}]
    assert client.post("/v1/events", json={"events": events}, headers=delivery).status_code == 202
    wait_until(lambda: sync_redis.hget(visitor_key_prefix(web) + "x", EXPERIENCE) is not None, "aggregated exposure")

    # logs in on the web, then in the app: both ids are linked to the person, with proof
    login = [{"type": "identify", "visitor_id": web, "channel": "web", "user_id": "cust-7",
              "identity_token": token("cust-7"), "traits": {"plan": "pro"}}]
    assert client.post("/v1/events", json={"events": login}, headers=delivery).status_code == 202
    app = "app-device-1"
    app_login = [{"type": "identify", "visitor_id": app, "channel": "ios", "user_id": "cust-7",
                  "identity_token": token("cust-7")}]
    response = client.post("/v1/events", json={"events": app_login}, headers=delivery)
    assert response.status_code == 202 and response.json()["accepted"] == 1, response.text
    assert sync_redis.hget(profile_key(app), "person") == person == sync_redis.hget(profile_key(web), "person")

    # the app decides with the person's profile: the variant the web saw first, and the web's traits
    body = {"visitor": {"id": app, "channel": "ios"}, "entries": [ENTRY]}
    entry = client.post("/v1/personalize", json=body, headers=delivery).json()["entries"][0]
    assert (entry["experience"], entry["variant"]) == (EXPERIENCE, variant)
    app_events = [{"type": "page_view", "visitor_id": app, "channel": "ios", "touchpoint": "product"}]
    assert client.post("/v1/events", json={"events": app_events}, headers=delivery).status_code == 202

    # the store's back office records the purchase with the user id and the admin key only
    sale = [{"type": "purchase", "user_id": "cust-7", "channel": "store", "touchpoint": "checkout",
             "value": 120.0, "currency": "EUR", "order_id": "store-1"}]
    response = client.post("/v1/events", json={"events": sale}, headers=admin)
    assert response.status_code == 202 and response.json()["accepted"] == 1, response.text

    # the streams: before the link the web id's, from the link on the person's
    exposures = [(v, x) for v, x in stream_visitors(sync_redis, "vary:exposures") if x == EXPERIENCE]
    assert exposures == [(web, EXPERIENCE), (person, EXPERIENCE)]
    assert stream_visitors(sync_redis, "vary:events") == [
        (web, "page_view"), (person, "identify"), (person, "identify"), (person, "page_view"), (person, "purchase"),
    ]

    # results: one visitor, exposed on the web, who bought in the store (the web exposure's state
    # was merged into the person at the link, so the purchase is attributed to it)
    agg = f"vary:agg:{{{EXPERIENCE}}}:all"
    wait_until(lambda: sync_redis.hget(agg, f"{variant}:conv:purchase") == "1", "the purchase aggregated")
    results = client.get(f"/v1/experiences/{EXPERIENCE}/results", headers=admin).json()
    assert results["visitors"][variant] == 1 and sum(results["visitors"]) == 1
    assert results["exposures"][variant] == 2
    bought = results["goals"]["purchase"]["variants"][variant]
    assert (bought["visitors"], bought["conversions"]) == (1, 1)
    by_channel = results["breakdowns"]["channel"]  # by the channel of the first exposure: the web
    assert by_channel["web"]["purchase"]["variants"][variant]["conversions"] == 1
    assert by_channel.get("ios", {}).get("purchase", {"variants": [{"conversions": 0}] * 3})["variants"][variant][
        "conversions"] == 0

    # journeys: the whole journey, the anonymous web part included, is one person's, in the variant the
    # web exposure assigned, converting in the store; the channel switches count
    journey = client.get("/v1/journeys/shopping", params={"experience": EXPERIENCE}, headers=admin).json()
    assert journey["unexposed_visitors"] == 0
    assert {k: v["visitors"] for k, v in journey["variants"].items() if v["visitors"]} == {str(variant): 1}
    one = journey["variants"][str(variant)]
    assert one["paths"] == [{"steps": ["web:home", "ios:product", "store:checkout"], "visitors": 1}]
    assert [(t["from_step"], t["to_step"], t["visitors"]) for t in one["transitions"]] == [
        ("ios:product", "store:checkout", 1), ("web:home", "ios:product", 1)]
    stages = {stage["key"]: stage for stage in one["stages"]}
    assert [(k, stages[k]["reached"], stages[k]["channels"]) for k in ("find", "evaluate", "buy")] == [
        ("find", 1, {"web": {"visitors": 1, "events": 1}}),
        ("evaluate", 1, {"ios": {"visitors": 1, "events": 1}}),
        ("buy", 1, {"store": {"visitors": 1, "events": 1}}),
    ]
    assert (stages["evaluate"]["reached_after_previous"], stages["find"]["continued"]) == (1, 1)
    everyone = client.get("/v1/journeys/shopping", headers=admin).json()["variants"]["all"]
    assert everyone["visitors"] == 1 and everyone["paths"] == one["paths"]
    switches: dict[str, int] = {}
    for key in sync_redis.scan_iter(match="vary:cx:{w:*}:all"):
        for field, n in sync_redis.hgetall(key).items():
            if field.startswith("tr:"):
                switches[field] = switches.get(field, 0) + int(n)
    assert switches == {"tr:web>ios": 1, "tr:ios>store": 1}

    # erasing any one id erases the person: every linked id and the user id's link
    erased = client.delete(f"/v1/visitors/{app}", headers=admin)
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["visitor_id"] == app and set(body["linked_ids"]) == {person, web}
    assert body["user_link_deleted"] is True and body["events_deleted"] == 5 and body["exposures_deleted"] == 4
    for one in (web, app, person):
        assert list(sync_redis.scan_iter(match=visitor_key_prefix(one) + "*")) == []
    assert sync_redis.get(person_index_key("cust-7")) is None
    assert sync_redis.xlen("vary:events") == 0


def test_erasing_by_user_id_erases_the_person_and_a_back_office_event_needs_no_visitor(
    client: TestClient, delivery: dict[str, str], admin: dict[str, str], sync_redis: redis.Redis
) -> None:
    survey = [{"type": "survey", "user_id": "cust-8", "channel": "call_center", "metric": "csat", "score": 4}]
    response = client.post("/v1/events", json={"events": survey}, headers=admin)
    assert response.status_code == 202 and response.json()["accepted"] == 1, response.text
    person = sync_redis.get(person_index_key("cust-8"))
    assert person is not None and person.startswith("vp-")
    assert stream_visitors(sync_redis, "vary:events") == [(person, "survey")]
    link = [{"type": "identify", "visitor_id": "kiosk-1", "channel": "kiosk", "user_id": "cust-8",
             "identity_token": token("cust-8")}]
    assert client.post("/v1/events", json={"events": link}, headers=delivery).status_code == 202
    assert sync_redis.hget(profile_key("kiosk-1"), "person") == person

    erased = client.delete("/v1/visitors/cust-8", headers=admin).json()
    assert set(erased["linked_ids"]) == {person, "kiosk-1"} and erased["user_link_deleted"] is True
    assert erased["events_deleted"] == 2
    assert sync_redis.get(person_index_key("cust-8")) is None
    assert sync_redis.hget(profile_key("kiosk-1"), "person") is None
    # an id never linked erases just itself, as before
    assert client.delete("/v1/visitors/nobody", headers=admin).json()["linked_ids"] == []
