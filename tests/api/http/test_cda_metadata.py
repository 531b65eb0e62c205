"""``format=cda`` answers carry each entry's own ``metadata.tags`` (Contentful's content tags), on the
Contentful Personalization marketing export (tests/fixtures/ninetailed/), whose hero entries are tagged
``baseline`` in the export."""

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

MARKETING = Path(__file__).parents[2] / "fixtures" / "ninetailed" / "marketing-contentful-next.json"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(msgspec.structs.replace(settings, content_source=str(MARKETING)))
    with TestClient(app) as client:
        yield client


def test_tags_of_the_served_entries_in_the_cda_shape(client: TestClient, delivery: dict[str, str]) -> None:
    export: dict[str, Any] = json.loads(MARKETING.read_text(encoding="utf-8"))
    metadata = {e["sys"]["id"]: e.get("metadata", {}) for e in export["entries"]}
    tagged = [entry_id for entry_id, m in metadata.items() if m.get("tags")]
    body = {"visitor": {"id": "tags-visitor", "country": "DE"}, "entries": tagged, "format": "cda"}
    response = client.post("/v1/personalize", json=body, headers=delivery)
    assert response.status_code == 200, response.text
    served = response.json()["entries"]
    assert len(served) == len(tagged)
    for entry in served:
        assert entry["metadata"] == {"tags": metadata[entry["variant_entry_id"]].get("tags", []), "concepts": []}
    assert any(entry["metadata"]["tags"] for entry in served)
    one = client.get(f"/v1/entries/{tagged[0]}", params={"visitor_id": "tags-visitor", "format": "cda"},
                     headers=delivery).json()  # fmt: skip
    assert one["metadata"]["tags"] == metadata[one["variant_entry_id"]].get("tags", [])
