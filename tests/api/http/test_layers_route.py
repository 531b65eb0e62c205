"""Layers over HTTP with the real app: the demo's two banners put in one layer (no ranges: equal
shares in key order) never both reach a visitor of ``/v1/personalize``, each gets half within
sampling error, and ``/v1/experiences`` and the dashboard show the layer and the ranges."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from litestar.testing import TestClient
from scipy.stats import binom

from api.app import create_app
from api.settings import Settings
from content import demo_space_path
from personalization.decision.global_holdout import in_global_holdout
from tests.content.spaces import remove_field, set_field

VISITORS = 800
GLOBAL_SHARE = 0.05  # the demo space's global holdout: those visitors get every baseline


@pytest.fixture
def layered_client(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    export = json.loads(demo_space_path().read_text(encoding="utf-8"))
    for entry_id in ("bannerShippingTest", "newsletterCopy"):
        set_field(export, entry_id, "layer", "banners")
    # Everyone may enter the newsletter test, so the layer alone splits the two.
    remove_field(export, "newsletterCopy", "audience")
    remove_field(export, "newsletterCopy", "trafficAllocation")
    space = tmp_path / "space.json"
    space.write_text(json.dumps(export), encoding="utf-8")
    with TestClient(create_app(msgspec.structs.replace(settings, content_source=str(space)))) as client:
        yield client


def test_one_layer_across_two_entries_over_http(
    layered_client: TestClient, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    listed = layered_client.get("/v1/experiences", headers=admin)
    assert listed.status_code == 200, listed.text
    by_key = {e["key"]: e for e in listed.json()["experiences"]}
    assert by_key["banner-shipping-test"]["layer"] == "banners"
    assert by_key["banner-shipping-test"]["layer_range"] == [0.0, 0.5]  # key order: banner… < newsletter…
    assert by_key["newsletter-copy"]["layer_range"] == [0.5, 1.0]
    assert by_key["hero-sale"]["layer"] is None and by_key["hero-sale"]["layer_range"] is None

    visitors = [v for v in (f"http-layer-{i}" for i in range(VISITORS)) if not in_global_holdout(v, GLOBAL_SHARE)]
    in_banner = 0
    for visitor in visitors:
        body = {"visitor": {"id": visitor}, "entries": ["bannerShipping", "bannerNewsletter"]}
        response = layered_client.post("/v1/personalize", json=body, headers=delivery)
        assert response.status_code == 200, response.text
        banner, newsletter = response.json()["entries"]
        assert (banner["experience"] is None) != (newsletter["experience"] is None), (visitor, banner, newsletter)
        outside = newsletter if banner["experience"] else banner
        assert "layer 'banners'" in outside["reason"] and outside["variant_entry_id"] == outside["entry_id"]
        in_banner += banner["experience"] == "banner-shipping-test"
    n = len(visitors)
    assert binom.ppf(0.0005, n, 0.5) <= in_banner <= binom.isf(0.0005, n, 0.5)

    schema = layered_client.get("/schema/openapi.json").json()
    info = schema["components"]["schemas"]["ExperienceInfo"]["properties"]
    assert {"layer", "layer_range"} <= set(info)


def test_the_dashboard_shows_layers(layered_client: TestClient, admin: dict[str, str]) -> None:
    page = layered_client.get("/dashboard", headers=admin)
    assert page.status_code == 200, page.text
    assert "layer banners: 0%–50%" in page.text and "layer banners: 50%–100%" in page.text
    detail = layered_client.get("/dashboard/experiences/newsletter-copy", headers=admin)
    assert detail.status_code == 200, detail.text
    assert "<dt>Layer</dt>" in detail.text and "banners: 50%–100%" in detail.text
    plain = layered_client.get("/dashboard/experiences/hero-sale", headers=admin)
    assert plain.status_code == 200 and "<dt>Layer</dt>" not in plain.text
