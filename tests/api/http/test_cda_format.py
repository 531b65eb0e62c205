"""``format=cda``, ``includes``, ``GET /v1/assets/{id}``, repeated entries and draft reports, over
Contentful's own exports (tests/fixtures/contentful/) and the demo space."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from personalization.types import EXPOSURE_DECODER

FIXTURES = Path(__file__).parents[2] / "fixtures" / "contentful"
FINTECH = FIXTURES / "marketing-fintech-export.json"


def _fintech() -> dict[str, Any]:
    return json.loads(FINTECH.read_text())


def _client(settings: Settings, path: Path) -> TestClient:
    return TestClient(create_app(msgspec.structs.replace(settings, content_source=str(path))))


@pytest.fixture
def fintech(settings: Settings) -> Iterator[TestClient]:
    with _client(settings, FINTECH) as client:
        yield client


def _embedding_entry(export: dict[str, Any]) -> tuple[str, set[str]]:
    """An entry whose rich text embeds entries as blocks, and the ids it embeds (from the export)."""
    for entry in export["entries"]:
        text = json.dumps(entry["fields"])
        if '"embedded-entry-block"' in text:
            targets = set()
            for values in entry["fields"].values():
                for value in values.values():
                    if isinstance(value, dict) and value.get("nodeType") == "document":
                        targets |= {
                            n["data"]["target"]["sys"]["id"]
                            for n in _nodes(value)
                            if n["nodeType"] == "embedded-entry-block"
                        }
            return entry["sys"]["id"], targets
    raise AssertionError("the export embeds no entry")


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("content", ()):
        yield from _nodes(child)


def test_cda_format_answers_in_the_delivery_api_shape(fintech: TestClient, delivery: dict[str, str]) -> None:
    export = _fintech()
    entry_id, embedded = _embedding_entry(export)
    body = {"visitor": {"id": "v-cda"}, "entries": [entry_id], "locale": "de-DE", "format": "cda"}
    response = fintech.post("/v1/personalize", json=body, headers=delivery)
    assert response.status_code == 200, response.text
    data = response.json()
    served = data["entries"][0]
    assert served["sys"]["id"] == entry_id and served["sys"]["type"] == "Entry"
    assert served["sys"]["locale"] == "de-DE" and data["locale"] == "de-DE"
    assert served["metadata"] == {"tags": [], "concepts": []}
    source = next(e for e in export["entries"] if e["sys"]["id"] == entry_id)
    assert served["sys"]["contentType"]["sys"]["id"] == source["sys"]["contentType"]["sys"]["id"]
    # links stay links in fields; what they reach is in includes, each once
    included = [item["sys"]["id"] for item in data["includes"]["Entry"]]
    assert embedded <= set(included) and len(included) == len(set(included))
    assert all(
        item["sys"]["type"] == "Asset" and item["fields"]["file"]["url"].startswith("//")
        for item in data["includes"]["Asset"]
    )


def test_compact_stays_the_default_and_includes_what_rich_text_embeds(
    fintech: TestClient, delivery: dict[str, str]
) -> None:
    entry_id, embedded = _embedding_entry(_fintech())
    data = fintech.post(
        "/v1/personalize", json={"visitor": {"id": "v-compact"}, "entries": [entry_id]}, headers=delivery
    ).json()
    served = data["entries"][0]
    assert served["sys"] is None and served["metadata"] is None and "sys" not in served["fields"]
    assert embedded <= {item["id"] for item in data["includes"]["Entry"]}
    assert all(set(item) == {"id", "content_type", "fields"} for item in data["includes"]["Entry"])


def test_get_entry_accepts_format_and_carries_its_includes(
    fintech: TestClient, delivery: dict[str, str]
) -> None:
    entry_id, embedded = _embedding_entry(_fintech())
    for fmt, key in (("cda", lambda item: item["sys"]["id"]), ("compact", lambda item: item["id"])):
        response = fintech.get(
            f"/v1/entries/{entry_id}", params={"visitor_id": "v-get", "format": fmt}, headers=delivery
        )
        assert response.status_code == 200, response.text
        assert embedded <= {key(item) for item in response.json()["includes"]["Entry"]}
    bad = fintech.get(
        f"/v1/entries/{entry_id}", params={"visitor_id": "v-get", "format": "html"}, headers=delivery
    )
    assert bad.status_code == 400 and "format" in bad.text


def test_assets_can_be_fetched_in_either_shape(fintech: TestClient, delivery: dict[str, str]) -> None:
    asset = _fintech()["assets"][0]
    url = asset["fields"]["file"]["en-US"]["url"]
    compact = fintech.get(f"/v1/assets/{asset['sys']['id']}", params={"locale": "de_DE"}, headers=delivery)
    assert compact.status_code == 200, compact.text
    assert compact.json()["locale"] == "de-DE" and compact.json()["asset"]["url"] == "https:" + url
    cda = fintech.get(f"/v1/assets/{asset['sys']['id']}", params={"format": "cda"}, headers=delivery).json()
    assert cda["locale"] == "en-US" and cda["asset"]["fields"]["file"]["url"] == url
    assert fintech.get("/v1/assets/nope", headers=delivery).status_code == 404
    assert fintech.get(f"/v1/assets/{asset['sys']['id']}").status_code == 401


def test_a_repeated_entry_is_decided_and_logged_once(
    client: TestClient, delivery: dict[str, str], sync_redis
) -> None:
    body = {"visitor": {"id": "v-twice"}, "entries": ["heroHome", "bannerShipping", "heroHome"]}
    data = client.post("/v1/personalize", json=body, headers=delivery).json()
    assert [e["entry_id"] for e in data["entries"]] == ["heroHome", "bannerShipping", "heroHome"]
    assert data["entries"][0] == data["entries"][2]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        logged = [EXPOSURE_DECODER.decode(f["data"]) for _, f in sync_redis.xrange("vary:exposures")]
        if any(x.entry_id == "bannerShipping" for x in logged):
            break
        time.sleep(0.02)
    per_entry = [x for x in logged if x.experience != "_global"]  # the global holdout's own exposure aside
    assert [x.entry_id for x in per_entry].count("heroHome") == 1, per_entry
    assert {x.id for x in per_entry if x.entry_id == "heroHome"} == {data["entries"][0]["exposure_id"]}


def test_entries_with_unpublished_changes_are_content_issues(
    settings: Settings, admin: dict[str, str], tmp_path: Path
) -> None:
    """Contentful's export has none, so one entry's ``sys.version`` is bumped in a copy: the
    export tool's output for an entry saved twice after publishing."""
    export = copy.deepcopy(_fintech())
    entry = export["entries"][0]
    entry["sys"]["version"] = entry["sys"]["publishedVersion"] + 3
    path = tmp_path / "drafted.json"
    path.write_text(json.dumps(export))
    with _client(settings, path) as client:
        issues = client.get("/v1/content/issues", headers=admin).json()["issues"]
    assert [i["entry_id"] for i in issues] == [entry["sys"]["id"]]
    assert "unpublished changes" in issues[0]["problem"]


def test_underscore_locales_are_accepted_everywhere_and_answers_name_the_served_locale(
    fintech: TestClient, delivery: dict[str, str]
) -> None:
    entry_id, _ = _embedding_entry(_fintech())
    body = {"visitor": {"id": "v-loc"}, "entries": [entry_id], "locale": "de_AT"}
    posted = fintech.post("/v1/personalize", json=body, headers=delivery)
    assert posted.status_code == 200, posted.text
    assert posted.json()["locale"] == "de-DE" and posted.json()["entries"][0]["locale"] == "de-DE"
    got = fintech.get(
        f"/v1/entries/{entry_id}", params={"visitor_id": "v-loc", "locale": "en_GB"}, headers=delivery
    )
    assert got.status_code == 200 and got.json()["locale"] == "en-US"
    bad = fintech.post("/v1/personalize", json={**body, "locale": "de DE"}, headers=delivery)
    assert bad.status_code == 400 and "locale" in bad.text


def test_the_new_fields_and_route_are_in_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/schema/openapi.json").json()
    components = schema["components"]["schemas"]
    assert set(components["Includes"]["properties"]) == {"Entry", "Asset"}
    assert {"includes"} <= set(components["PersonalizeResponse"]["properties"])
    assert {"sys", "metadata", "includes", "locale"} <= set(components["PersonalizedEntry"]["properties"])
    assert "cda" in json.dumps(components["PersonalizeRequest"]["properties"]["format"])
    assert "/v1/assets/{asset_id}" in schema["paths"]
    parameters = schema["paths"]["/v1/entries/{entry_id}"]["get"]["parameters"]
    assert "format" in {p["name"] for p in parameters}
