"""``GET /v1/entries/{id}`` takes the visitor context of ``POST /v1/personalize`` as query parameters
(so a GET decision is the POST decision), list-valued traits are accepted, and traits persist."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
import redis
from litestar.testing import TestClient

from personalization.store.keys import traits_key, visitor_keys_pattern


def forget(sync_redis: redis.Redis, visitor_id: str) -> None:
    """Delete the visitor's keys, so the next call starts without a sticky assignment or traits."""
    keys = list(sync_redis.scan_iter(match=visitor_keys_pattern(visitor_id)))
    if keys:
        sync_redis.delete(*keys)


def written(sync_redis: redis.Redis, before: int) -> None:
    """Wait until the exposure writer wrote the call's batch (exposures and sticky assignments go
    in one script), so forgetting the visitor afterwards really forgets."""
    deadline = time.monotonic() + 5
    while sync_redis.xlen("vary:exposures") <= before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sync_redis.xlen("vary:exposures") > before


def stored_traits(sync_redis: redis.Redis, visitor_id: str, wait: bool = True) -> dict[str, Any]:
    """The visitor's remembered traits; ``wait``: until the background write has landed (5 s at most)."""
    deadline = time.monotonic() + 5
    while wait and not sync_redis.exists(traits_key(visitor_id)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return {k: msgspec.json.decode(v) for k, v in sync_redis.hgetall(traits_key(visitor_id)).items()}


DECIDED = ("entry_id", "experience", "variant", "variant_entry_id", "is_control", "holdout", "propensity", "reason")

VISITORS: list[dict[str, Any]] = [
    {"id": "ctx-1", "country": "CA", "channel": "web", "device": "Mobile", "page": "/sale?utm_campaign=x",
     "referrer": "https://google.com/", "utm": {"campaign": "sale", "source": "google"},
     "traits": {"plan": "pro", "seats": 5.0, "vip": True, "features": ["SSO", "Reporting"],
                "address": {"city": "Toronto", "tags": ["hq"]}, "zip": "01234"}},
    {"id": "ctx-2", "country": "de", "channel": "ios", "locale": "de-DE", "traits": {"plan": "free"}},
    {"id": "ctx-3", "country": "US", "channel": "store", "utm": {"medium": "email"}, "page": "/pricing"},
    {"id": "ctx-4", "channel": "android", "traits": {"tags": ["a", "b"], "score": 7.5, "gone": None}},
    {"id": "ctx-5", "country": "US", "channel": "web", "referrer": "https://bing.com/?q=sofa"},
]


def query_of(visitor: dict[str, Any]) -> list[tuple[str, str]]:
    """The visitor as GET query parameters (traits as JSON values; text that reads as JSON quoted)."""
    params: list[tuple[str, str]] = [("visitor_id", visitor["id"])]
    for name in ("channel", "country", "device", "locale", "page", "referrer"):
        if name in visitor:
            params.append((name, visitor[name]))
    params += [(f"utm.{k}", v) for k, v in visitor.get("utm", {}).items()]
    for name, value in visitor.get("traits", {}).items():
        if isinstance(value, dict):
            params += [(f"traits.{name}.{k}", msgspec.json.encode(v).decode()) for k, v in value.items()]
        elif isinstance(value, list) and len(value) > 1:
            params += [(f"traits.{name}", msgspec.json.encode(v).decode()) for v in value]  # repeated
        elif isinstance(value, str) and not value[:1].isdigit():
            params.append((f"traits.{name}", value))  # plain text
        else:
            params.append((f"traits.{name}", msgspec.json.encode(value).decode()))
    return params


@pytest.mark.parametrize("entry_id", ["heroHome", "bannerShipping", "bannerNewsletter"])
def test_get_decides_as_post_for_the_same_visitor_context(
    client: TestClient, delivery: dict[str, str], sync_redis: redis.Redis, entry_id: str
) -> None:
    for visitor in VISITORS:
        forget(sync_redis, visitor["id"])  # neither call sees the other's sticky assignment or traits
        before = sync_redis.xlen("vary:exposures")
        posted = client.post("/v1/personalize", json={"visitor": visitor, "entries": [entry_id]}, headers=delivery)
        assert posted.status_code == 200, posted.text
        written(sync_redis, before)
        has_traits = any(v is not None for v in visitor.get("traits", {}).values())
        post_traits = stored_traits(sync_redis, visitor["id"], wait=has_traits)
        forget(sync_redis, visitor["id"])
        got = client.get(f"/v1/entries/{entry_id}?{urlencode(query_of(visitor))}", headers=delivery)
        assert got.status_code == 200, got.text
        (post_entry,) = posted.json()["entries"]
        assert {k: got.json()[k] for k in DECIDED} == {k: post_entry[k] for k in DECIDED}, visitor["id"]
        # the GET visitor's traits are the POST visitor's, value for value (what each remembered)
        assert stored_traits(sync_redis, visitor["id"], wait=has_traits) == post_traits
        assert post_traits == {k: v for k, v in visitor.get("traits", {}).items() if v is not None}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("traits.a.b.c=1", "traits.a.b.c"),
        ("traits.x=[[1]]", "traits.x"),
        ("traits.x=" + "y" * 1100, "traits.x"),
        ("traits.=1", "traits."),
        ("traits=1", "traits"),
        ("utm.campaign=" + "c" * 300, "utm.campaign"),
        ("utm.a=1&utm.a=2", "utm.a"),
        ("traits.o.k=1&traits.o=2", "traits.o"),
        ("&".join(f"utm.u{i}=1" for i in range(17)), "utm.*"),
    ],
)
def test_bad_context_parameters_are_a_400_naming_the_parameter(
    client: TestClient, delivery: dict[str, str], query: str, parameter: str
) -> None:
    response = client.get(f"/v1/entries/heroHome?visitor_id=v1&{query}", headers=delivery)
    assert response.status_code == 400, response.text
    assert [p["key"] for p in response.json()["extra"]] == [parameter]


def test_bad_plain_parameters_are_a_400_too(client: TestClient, delivery: dict[str, str]) -> None:
    response = client.get("/v1/entries/heroHome?visitor_id=v1&page=" + "p" * 3000, headers=delivery)
    assert response.status_code == 400 and "page" in response.text


def test_list_traits_are_accepted_and_remembered_from_identify(
    client: TestClient, delivery: dict[str, str], sync_redis: redis.Redis
) -> None:
    traits = {"purchased_product_features": ["Process Management", "SSO"], "company": {"name": "Acme", "size": 40.0}}
    body = {"visitor": {"id": "lists-1", "traits": traits}, "entries": ["heroHome"]}
    assert client.post("/v1/personalize", json=body, headers=delivery).status_code == 200
    event = {"type": "identify", "visitor_id": "lists-2", "traits": traits, "event_id": "id-1"}
    response = client.post("/v1/events", json={"events": [event]}, headers=delivery)
    assert response.status_code == 202 and response.json()["accepted"] == 1
    assert stored_traits(sync_redis, "lists-2") == traits


def test_identify_over_the_bound_is_a_400_naming_the_trait(client: TestClient, delivery: dict[str, str]) -> None:
    events = [{"type": "identify", "visitor_id": "big", "event_id": f"b{j}",
               "traits": {f"t{j}_{i}": "v" * 1000 for i in range(5)}} for j in range(2)]
    response = client.post("/v1/events", json={"events": events}, headers=delivery)
    assert response.status_code == 202
    assert [r["field"] for r in response.json()["rejected"]] == ["traits.t1_3"]
    # stored: 5 traits of 1,006 bytes; 3 more fit in 8,192, the 4th does not
    over = {"visitor": {"id": "big", "traits": {f"m{i}": "x" * 1000 for i in range(4)}}, "entries": ["heroHome"]}
    refused = client.post("/v1/personalize", json=over, headers=delivery)
    assert refused.status_code == 400 and refused.json()["extra"][0]["key"] == "visitor.traits.m3"


def test_the_openapi_schema_describes_list_and_object_traits(client: TestClient) -> None:
    schemas = client.get("/schema/openapi.json").json()["components"]["schemas"]
    (visitor,) = [schema for name, schema in schemas.items() if name.endswith("Visitor")]
    traits = msgspec.json.encode(visitor["properties"]["traits"]).decode()
    assert '"type":"array"' in traits and traits.count('"type":"object"') == 2  # the map and one nested level
