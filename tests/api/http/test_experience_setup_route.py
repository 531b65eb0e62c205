"""An experience's frequency cap and bucketing over HTTP: ``/v1/experiences`` lists them as typed
fields (in the OpenAPI schema) and the dashboard's experience page shows them — the cap of a demo
experience given ``frequencyCap``, and ``ninetailed`` bucketing for a Contentful Personalization space."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from content import demo_space_path
from tests.content.spaces import set_field

MARKETING = Path(__file__).parents[2] / "fixtures" / "ninetailed" / "marketing-contentful-next.json"


def _client(settings: Settings, export: dict[str, Any], tmp_path: Path) -> TestClient:
    space = tmp_path / "space.json"
    space.write_text(json.dumps(export), encoding="utf-8")
    return TestClient(create_app(msgspec.structs.replace(settings, content_source=str(space))))


@pytest.fixture
def capped_client(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    export = json.loads(demo_space_path().read_text(encoding="utf-8"))
    set_field(export, "bannerShippingTest", "frequencyCap", {"max": 3, "per": "week"})
    set_field(export, "newsletterCopy", "frequencyCap", {"max": 1, "per": "campaign"})
    with _client(settings, export, tmp_path) as client:
        yield client


@pytest.fixture
def ninetailed_client(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    with _client(settings, json.loads(MARKETING.read_text(encoding="utf-8")), tmp_path) as client:
        yield client


def _listed(client: TestClient, admin: dict[str, str]) -> dict[str, dict[str, Any]]:
    response = client.get("/v1/experiences", headers=admin)
    assert response.status_code == 200, response.text
    return {e["key"]: e for e in response.json()["experiences"]}


def test_the_frequency_cap_is_listed_and_shown(capped_client: TestClient, admin: dict[str, str]) -> None:
    listed = _listed(capped_client, admin)
    assert listed["banner-shipping-test"]["frequency_cap"] == {"max_exposures": 3, "period": "week"}
    assert listed["newsletter-copy"]["frequency_cap"] == {"max_exposures": 1, "period": "campaign"}
    assert listed["hero-sale"]["frequency_cap"] is None
    assert {e["bucketing"] for e in listed.values()} == {"growthbook"}

    info = capped_client.get("/schema/openapi.json").json()["components"]["schemas"]["ExperienceInfo"]
    assert {"frequency_cap", "bucketing"} <= set(info["properties"])

    page = capped_client.get("/dashboard/experiences/banner-shipping-test", headers=admin)
    assert page.status_code == 200, page.text
    assert "<dt>Frequency cap</dt>" in page.text and "at most 3 exposures per person per week" in page.text
    assert "<dt>Bucketing</dt>" not in page.text
    once = capped_client.get("/dashboard/experiences/newsletter-copy", headers=admin).text
    assert "at most 1 exposure per person over the campaign" in once
    plain = capped_client.get("/dashboard/experiences/hero-sale", headers=admin)
    assert plain.status_code == 200 and "<dt>Frequency cap</dt>" not in plain.text


def test_ninetailed_bucketing_is_listed_and_shown(ninetailed_client: TestClient, admin: dict[str, str]) -> None:
    listed = _listed(ninetailed_client, admin)
    assert listed and {e["bucketing"] for e in listed.values()} == {"ninetailed"}
    key = sorted(listed)[0]
    page = ninetailed_client.get(f"/dashboard/experiences/{key}", headers=admin)
    assert page.status_code == 200, page.text
    assert "<dt>Bucketing</dt>" in page.text and "Ninetailed" in page.text
