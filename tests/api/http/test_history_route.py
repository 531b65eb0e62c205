"""End to end over HTTP and the real Valkey: page views sent to ``/v1/events`` build the visitor's
history, and ``/v1/personalize`` serves a Ninetailed audience over that history ("viewed a garden page
at least twice in the last 7 days") on a later page; erasing the visitor erases the history."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

import content
from api.app import create_app
from api.settings import Settings
from tests.api.conftest import ADMIN, DELIVERY

NT_DEMO = Path(content.__file__).parent / "demo" / "ninetailed.json"
GARDEN_TWICE_THIS_WEEK = {"any": [{"all": [{
    "type": "page", "key": "", "value": "", "count": "2", "operator": "greaterThanInclusive",
    "when": {"operator": "inTheLast", "value": 7, "unit": "days"},
    "conditions": [{"key": {"id": "context_page_path", "category": {"name": "path"}}, "operator": "startsWith",
                    "value": "/garden"}],
}]}]}
HEADERS = {"Authorization": f"Bearer {DELIVERY}"}


@pytest.fixture
def client(redis_url: str, model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    space = json.loads(NT_DEMO.read_text())
    (audience,) = [e for e in space["entries"] if e["sys"]["id"] == "ntAudSpringCampaign"]
    audience["fields"]["nt_rules"] = {"en-US": GARDEN_TWICE_THIS_WEEK}
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    settings = Settings(redis_url=redis_url, data_dir=model_dir, delivery_keys=(DELIVERY,), admin_keys=(ADMIN,),
                        train_demo_model=False, content_source=str(path))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def garden_banner(client: TestClient, visitor_id: str) -> Any:
    body = {"visitor": {"id": visitor_id, "page": "https://shop.example/home"}, "entries": ["bannerGarden"]}
    response = client.post("/v1/personalize", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    (entry,) = response.json()["entries"]
    return entry["variant_entry_id"]


def views(client: TestClient, visitor_id: str, *days_ago: float) -> None:
    now = time.time()
    events = [{"type": "page_view", "visitor_id": visitor_id, "page": f"https://shop.example/garden/{i}",
               "ts": now - days * 86_400} for i, days in enumerate(days_ago)]
    assert client.post("/v1/events", json={"events": events}, headers=HEADERS).status_code == 202


def test_a_history_audience_is_served_from_page_views_sent_earlier(client: TestClient) -> None:
    issues = client.get("/v1/content/issues", headers={"Authorization": f"Bearer {ADMIN}"})
    assert issues.status_code == 200 and "ntAudSpringCampaign" not in issues.text
    assert garden_banner(client, "fresh") == "bannerGarden"
    views(client, "keen", 1, 2)
    assert garden_banner(client, "keen") == "bannerGardenSpring"
    views(client, "lapsed", 1, 10)  # the second view is older than the window
    assert garden_banner(client, "lapsed") == "bannerGarden"
    views(client, "keen-no-consent", 1)
    no_consent = [{"type": "page_view", "visitor_id": "keen-no-consent", "page": "/garden/x", "analytics": False}]
    assert client.post("/v1/events", json={"events": no_consent}, headers=HEADERS).status_code == 202
    assert garden_banner(client, "keen-no-consent") == "bannerGarden"  # its second view was not kept


def test_erasing_the_visitor_forgets_their_history(client: TestClient) -> None:
    views(client, "keen", 1, 2)
    assert garden_banner(client, "keen") == "bannerGardenSpring"
    erased = client.delete("/v1/visitors/keen", headers={"Authorization": f"Bearer {ADMIN}"})
    assert erased.status_code in (200, 202), erased.text
    assert garden_banner(client, "keen") == "bannerGarden"
