"""The front-end kit over HTTP: the SDK files, the key in the query string, text/plain beacons, the demo."""

from __future__ import annotations

import hashlib
import logging

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from personalization.privacy import AccessLogRedactor
from tests.api.conftest import ADMIN, DELIVERY


@pytest.mark.parametrize("path", ["/v1/sdk.js", "/v1/sdk.mjs"])
def test_sdk_is_served_as_javascript_with_caching_headers(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10
    assert "createVary" in response.text and "sendBeacon" in response.text
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get(path, headers={"If-None-Match": '"something-else"'}).status_code == 200


def test_the_module_form_exports_create_vary_and_the_classic_form_does_not(client: TestClient) -> None:
    classic = client.get("/v1/sdk.js").text
    module = client.get("/v1/sdk.mjs").text
    assert "export " not in classic.replace("// ES module", "")  # a classic script cannot contain export
    assert "export function createVary" in module and "import.meta.url" in module
    assert client.get("/v1/sdk.js").headers["etag"] != client.get("/v1/sdk.mjs").headers["etag"]


def test_sdk_needs_no_key_and_is_allowed_cross_origin(settings: Settings) -> None:
    with TestClient(create_app(msgspec.structs.replace(settings, cors_origins=("https://shop.example",)))) as client:
        response = client.get("/v1/sdk.mjs", headers={"Origin": "https://shop.example"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://shop.example"
        preflight = client.options(
            "/v1/exposures",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204


def _event(visitor: str, **fields: object) -> dict[str, object]:
    return {"type": "page_view", "visitor_id": visitor, "page": "https://shop.example/", **fields}


def test_delivery_key_in_the_query_string_is_accepted_on_delivery_routes(
    client: TestClient, sync_redis
) -> None:
    body = {"visitor": {"id": "q-1"}, "entries": ["heroHome"]}
    assert client.post(f"/v1/personalize?key={DELIVERY}", json=body).status_code == 200
    assert client.get(f"/v1/entries/heroHome?visitor_id=q-1&key={DELIVERY}").status_code == 200
    response = client.post(f"/v1/events?key={DELIVERY}", json={"events": [_event("q-1")]})
    assert response.status_code == 202 and response.json()["accepted"] == 1
    assert client.post("/v1/personalize?key=wrong", json=body).status_code == 401
    assert client.post("/v1/personalize", json=body).status_code == 401  # still needs a key somewhere


def test_the_header_wins_over_the_query_key(client: TestClient) -> None:
    body = {"visitor": {"id": "q-2"}, "entries": ["heroHome"]}
    response = client.post(
        f"/v1/personalize?key={DELIVERY}", json=body, headers={"Authorization": "Bearer not-a-key"}
    )
    assert response.status_code == 401 and response.json()["detail"] == "unknown API key"


def test_query_keys_are_refused_on_admin_routes_and_admin_keys_in_urls(client: TestClient) -> None:
    for key in (ADMIN, DELIVERY):
        response = client.get(f"/v1/experiences?key={key}")
        assert response.status_code == 401, key
        assert "Authorization" in response.json()["detail"]
    # An admin key is never taken from a URL, even on a delivery route where the header would do.
    body = {"visitor": {"id": "q-3"}, "entries": ["heroHome"]}
    response = client.post(f"/v1/personalize?key={ADMIN}", json=body)
    assert response.status_code == 401 and "delivery keys only" in response.json()["detail"]
    assert client.get("/v1/experiences", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200


def test_text_plain_json_is_accepted_on_events(client: TestClient, sync_redis) -> None:
    """What ``navigator.sendBeacon`` sends: a text/plain body (no CORS preflight), the key in the URL."""
    body = b'{"events": [{"type": "conversion", "visitor_id": "beacon-1", "goal": "signup", "event_id": "b-1"}]}'
    response = client.post(
        f"/v1/events?key={DELIVERY}", content=body, headers={"Content-Type": "text/plain;charset=UTF-8"}
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (1, 0, [])
    stored = [fields["data"] for _, fields in sync_redis.xrange("vary:events")]
    assert any('"beacon-1"' in data and '"signup"' in data for data in stored)
    bad = client.post(f"/v1/events?key={DELIVERY}", content=b"{not json", headers={"Content-Type": "text/plain"})
    assert bad.status_code == 400


def test_the_key_never_reaches_the_access_log() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "POST", f"/v1/events?key={DELIVERY}&x=1", "1.1", 202), None,
    )
    AccessLogRedactor().filter(record)
    line = record.getMessage()
    assert DELIVERY not in line and "key=***&x=1" in line


def test_personalize_on_view_returns_tokens_and_auto_does_not(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {DELIVERY}"}
    body = {"visitor": {"id": "t-1"}, "entries": ["heroHome", "bannerShipping"]}
    auto = client.post("/v1/personalize", json=body, headers=headers).json()
    assert all(entry["exposure_token"] is None for entry in auto["entries"])
    on_view = client.post("/v1/personalize", json={**body, "exposures": "on_view"}, headers=headers).json()
    assert all(isinstance(entry["exposure_token"], str) for entry in on_view["entries"])
    bad = client.post("/v1/personalize", json={**body, "exposures": "later"}, headers=headers)
    assert bad.status_code == 400 and "exposures" in bad.text


def test_demo_page_carries_the_first_delivery_key_and_a_strict_csp(client: TestClient) -> None:
    response = client.get("/demo")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    csp = response.headers["content-security-policy"]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    html = response.text
    assert f'"key": "{DELIVERY}"' in html and ADMIN not in html
    assert f'<script type="module" nonce="{nonce}">' in html and "__VARY_" not in html
    assert 'import { createVary } from "/v1/sdk.mjs"' in html
    for entry in ("heroHome", "bannerShipping", "bannerNewsletter"):
        assert f'data-vary-entry="{entry}"' in html
    assert client.get("/demo").headers["content-security-policy"] != csp  # a new nonce per page


def test_demo_page_is_off_when_configured(settings: Settings) -> None:
    with TestClient(create_app(msgspec.structs.replace(settings, demo_page=False))) as client:
        assert client.get("/demo").status_code == 404
        assert client.get("/v1/sdk.js").status_code == 200  # the kit itself stays


def test_demo_page_never_shows_a_hashed_key(settings: Settings) -> None:
    hashed = "sha256:" + hashlib.sha256(DELIVERY.encode()).hexdigest()
    with TestClient(create_app(msgspec.structs.replace(settings, delivery_keys=(hashed,)))) as client:
        html = client.get("/demo").text
        assert '{"key": null}' in html and hashed not in html


def test_openapi_names_the_key_schemes_and_typed_errors(client: TestClient) -> None:
    schema = client.get("/schema/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["deliveryKey"] == {**schemes["deliveryKey"], "type": "http", "scheme": "bearer"}
    assert schemes["deliveryKeyQuery"]["in"] == "query" and schemes["deliveryKeyQuery"]["name"] == "key"
    personalize = schema["paths"]["/v1/personalize"]["post"]
    assert personalize["operationId"] == "personalize"
    assert {"deliveryKey": []} in personalize["security"]
    assert personalize["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert schema["paths"]["/v1/experiences"]["get"]["security"] == [{"adminKey": []}]
    exposures = schema["paths"]["/v1/exposures"]["post"]
    assert exposures["operationId"] == "recordExposures"
    assert exposures["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ExposuresAccepted"
    }
    assert "/v1/sdk.js" not in schema["paths"] and "/demo" not in schema["paths"]
    ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            assert any(code.startswith("2") for code in op["responses"]), (method, path)
