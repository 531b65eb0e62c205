"""CORS on the delivery routes only, for the configured origins."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.http.cors import is_delivery_path
from api.settings import Settings, load_settings

ALLOWED = "https://shop.example.com"
OTHER = "https://evil.example.net"


@pytest.fixture
def cors_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(msgspec.structs.replace(settings, cors_origins=(ALLOWED,)))) as client:
        yield client


def _preflight(client: TestClient, path: str, origin: str, method: str = "POST"):  # noqa: ANN202
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


@pytest.mark.parametrize("path", ["/v1/personalize", "/v1/events", "/v1/entries/heroHome"])
def test_preflight_from_an_allowed_origin(cors_client: TestClient, path: str) -> None:
    response = _preflight(cors_client, path, ALLOWED)
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in response.headers


def test_preflight_from_another_origin_has_no_cors_headers(cors_client: TestClient) -> None:
    response = _preflight(cors_client, "/v1/personalize", OTHER)
    assert not any(h.startswith("access-control-") for h in response.headers)


@pytest.mark.parametrize("path", ["/v1/experiences", "/v1/visitors/x", "/v1/models", "/v1/webhooks/contentful"])
def test_admin_routes_never_answer_cors(cors_client: TestClient, path: str) -> None:
    response = _preflight(cors_client, path, ALLOWED, method="GET")
    assert not any(h.startswith("access-control-") for h in response.headers)


def test_actual_request_gets_acao_for_allowed_origin_only(
    cors_client: TestClient, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    body = {"visitor": {"id": "cors-visitor"}, "entries": ["heroHome"]}
    ok = cors_client.post("/v1/personalize", json=body, headers={**delivery, "Origin": ALLOWED})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ALLOWED
    assert "Origin" in ok.headers["vary"]
    other = cors_client.post("/v1/personalize", json=body, headers={**delivery, "Origin": OTHER})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    admin_route = cors_client.get("/v1/experiences", headers={**admin, "Origin": ALLOWED})
    assert admin_route.status_code == 200 and "access-control-allow-origin" not in admin_route.headers


def test_errors_on_delivery_routes_carry_acao(cors_client: TestClient) -> None:
    """A 401 the browser can read (instead of an opaque CORS failure)."""
    response = cors_client.post("/v1/personalize", json={}, headers={"Origin": ALLOWED})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ALLOWED


def test_no_origins_configured_no_cors(client: TestClient) -> None:
    response = _preflight(client, "/v1/personalize", ALLOWED)
    assert "access-control-allow-origin" not in response.headers


def test_wildcard_and_settings() -> None:
    assert load_settings({"VARY_CORS_ORIGINS": "https://a.example, https://b.example"}).cors_origins == (
        "https://a.example",
        "https://b.example",
    )
    assert Settings().cors_origins == ()
    assert is_delivery_path("/v1/entries/x") and is_delivery_path("/v1/personalize/")
    assert not is_delivery_path("/v1/entries/") and not is_delivery_path("/v1/experiences")


def test_wildcard_origin(settings: Settings) -> None:
    with TestClient(create_app(msgspec.structs.replace(settings, cors_origins=("*",)))) as client:
        response = _preflight(client, "/v1/events", OTHER)
        assert response.headers["access-control-allow-origin"] == "*"
