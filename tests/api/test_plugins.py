"""Plugins passed to ``create_app`` in code, over the real app, demo content and Valkey.

An audience on a plugin attribute matches and says so in the reason; an attribute plugin that raises
or hangs never fails or stalls a request (its health shows it); a plugin policy type compiles and
serves; ``GET /v1/plugins`` and ``POST /v1/export`` are admin routes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from content.sources import ExportFileSource, demo_space_path
from personalization.seams import Plugin
from personalization.types import Assignment, Experience, Visitor
from tests.content.spaces import entry, remove_field, set_field


class Tiers:
    """A CRM lookup over an in-memory table (the attribute seam)."""

    def __init__(self, tiers: dict[str, str]) -> None:
        self.tiers = tiers
        self.seen: list[str] = []

    async def __call__(self, visitor: Visitor) -> Mapping[str, str]:
        self.seen.append(visitor.id)
        tier = self.tiers.get(visitor.id)
        return {"crm_tier": tier} if tier else {}


async def broken(visitor: Visitor) -> Mapping[str, str]:
    raise ConnectionError("CRM unreachable")


async def hanging(visitor: Visitor) -> Mapping[str, str]:
    await asyncio.Event().wait()  # never answers
    return {}


class FirstVariant:
    """A plugin experience type: everyone who matches gets variant 1 (the policy seam)."""

    type = "always_first"

    def assign(
        self, experience: Experience, visitor_id: str, sticky: int | None, attributes: Any, context: Any
    ) -> Assignment:
        return Assignment(
            experience=experience, variant=1, holdout=False, propensity=1.0, reason="always_first: variant 1"
        )


@pytest.fixture
def space(tmp_path: Path) -> Path:
    """The demo space with the price-sensitive audience on ``crm_tier`` and the shipping test on a
    plugin type."""
    export = json.loads(demo_space_path().read_text())
    remove_field(export, "priceSensitive", "segment")
    remove_field(export, "priceSensitive", "minScore")
    set_field(export, "priceSensitive", "rules", {"crm_tier": "gold"})
    entry(export, "bannerShippingTest")["fields"]["type"]["en-US"] = "always_first"
    path = tmp_path / "space.json"
    path.write_text(json.dumps(export))
    return path


def _client(settings: Settings, space: Path, plugins: list[Plugin]) -> TestClient:
    app = create_app(settings, content_source=ExportFileSource(space), plugins=plugins, discover_plugins=False)
    return TestClient(app)


def _hero(client: TestClient, delivery: dict[str, str], visitor_id: str) -> dict[str, Any]:
    body = {"visitor": {"id": visitor_id, "country": "DE"}, "entries": ["heroHome"]}
    response = client.post("/v1/personalize", json=body, headers=delivery)
    assert response.status_code == 200, response.text
    return response.json()["entries"][0]


def test_audience_on_a_plugin_attribute_matches_and_the_reason_names_it(
    settings: Settings, space: Path, delivery: dict[str, str]
) -> None:
    tiers = Tiers({"gold-1": "gold", "silver-1": "silver"})
    with _client(settings, space, [Plugin(name="crm", attributes=[tiers])]) as client:
        gold = _hero(client, delivery, "gold-1")
        silver = _hero(client, delivery, "silver-1")
    assert gold["experience"] == "hero-sale"
    assert "crm_tier" in gold["reason"] and "gold" in gold["reason"]
    assert silver["experience"] != "hero-sale"
    assert tiers.seen == ["gold-1", "silver-1"]
    registry = client.app.state.plugins.registry  # the app's own plugin registry (no global one)
    assert registry.extractors == () and registry.policies == {}  # the lifespan undid its install


def test_a_plugin_that_raises_or_hangs_does_not_fail_the_request(
    settings: Settings, space: Path, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    plugins = [
        Plugin(name="broken", attributes=[broken]),
        Plugin(name="hanging", attributes=[hanging], timeout_s=0.05),
        Plugin(name="crm", attributes=[Tiers({"gold-2": "gold"})]),
    ]
    with _client(settings, space, plugins) as client:
        hero = _hero(client, delivery, "gold-2")
        listed = client.get("/v1/plugins", headers=admin)
    assert hero["experience"] == "hero-sale"  # the working plugin's attribute still counts
    assert listed.status_code == 200, listed.text
    health = {p["name"]: p["health"] for p in listed.json()["plugins"]}
    assert health["broken"]["calls"] == 1 and health["broken"]["failures"] == 1
    assert health["broken"]["last_error"] == "ConnectionError: CRM unreachable"
    assert health["hanging"]["timeouts"] == 1 and health["hanging"]["failures"] == 1
    assert health["crm"] == {"calls": 1, "failures": 0, "timeouts": 0, "last_error": None, "last_error_at": None}


def test_a_plugin_policy_type_compiles_and_serves(
    settings: Settings, space: Path, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    with _client(settings, space, [Plugin(name="first", policies=[FirstVariant()])]) as client:
        body = {"visitor": {"id": "v-policy"}, "entries": ["bannerShipping"]}
        banner = client.post("/v1/personalize", json=body, headers=delivery).json()["entries"][0]
        issues = client.get("/v1/content/issues", headers=admin).json()
    assert banner["experience"] == "banner-shipping-test" and banner["variant"] == 1
    assert banner["reason"].endswith("always_first: variant 1")
    assert "bannerShippingTest" not in json.dumps(issues)


def test_without_the_plugin_its_type_is_a_content_issue(
    settings: Settings, space: Path, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    with _client(settings, space, []) as client:
        issues = client.get("/v1/content/issues", headers=admin).json()
    text = json.dumps(issues)
    assert "bannerShippingTest" in text and "always_first" in text


def test_plugins_route_lists_seams_and_needs_the_admin_key(
    settings: Settings, space: Path, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    with _client(settings, space, [Plugin(name="crm", attributes=[Tiers({})], policies=[FirstVariant()])]) as client:
        assert client.get("/v1/plugins", headers=delivery).status_code == 403
        data = client.get("/v1/plugins", headers=admin).json()
    assert data["plugins"] == [{
        "name": "crm", "origin": "code", "loaded": True, "error": None, "seams": ["attributes", "policies"],
        "health": {"calls": 0, "failures": 0, "timeouts": 0, "last_error": None, "last_error_at": None},
    }]
    assert data["sinks"] == []


def test_two_plugins_with_one_name_keep_the_first(settings: Settings, space: Path, admin: dict[str, str]) -> None:
    with _client(settings, space, [Plugin(name="crm"), Plugin(name="crm")]) as client:
        plugins = client.get("/v1/plugins", headers=admin).json()["plugins"]
    assert [p["loaded"] for p in plugins] == [True, False]
    assert plugins[1]["error"] == "another plugin is already called 'crm'"


@pytest.fixture
def client_with_data(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "models").symlink_to(Path(settings.data_dir) / "models")
    import msgspec

    local = msgspec.structs.replace(settings, data_dir=data_dir)
    with TestClient(create_app(local, discover_plugins=False)) as client:
        yield client, data_dir


def test_export_route_writes_parquet_into_the_data_dir(
    client_with_data: tuple[TestClient, Path], delivery: dict[str, str], admin: dict[str, str]
) -> None:
    client, data_dir = client_with_data
    body = {"visitor": {"id": "export-1"}, "entries": ["heroHome", "bannerShipping"]}
    assert client.post("/v1/personalize", json=body, headers=delivery).status_code == 200
    from datetime import UTC, datetime

    today = datetime.now(UTC).date().isoformat()
    result = None
    for _ in range(100):  # the exposure writer flushes in the background
        result = client.post("/v1/export", json={"since": today}, headers=admin).json()
        if result["exposures"]["rows"] >= 3:
            break
        time.sleep(0.05)
    # 2 entries + the demo's global holdout exposure ("_global", issue #18)
    assert result is not None and result["exposures"]["rows"] == 3, result
    assert result["until"] == today and result["out_dir"] == "exports"
    assert all((data_dir / f).is_file() for f in result["exposures"]["files"])
    assert client.post("/v1/export", json={"since": today}, headers=delivery).status_code == 403
    bad = client.post("/v1/export", json={"since": "2026-02-30"}, headers=admin)
    assert bad.status_code == 400 and "since" in bad.text
    backwards = client.post("/v1/export", json={"since": today, "until": "2000-01-01"}, headers=admin)
    assert backwards.status_code == 400 and "after until" in backwards.text


class OnlyLoads:
    """A plain ``ContentSource`` (no ``sync``): Vary reloads it whole on every sync."""

    def __init__(self, path: Path) -> None:
        self.inner = ExportFileSource(path)

    def load(self):  # noqa: ANN201 - ContentItems
        return self.inner.load()


def test_a_plugin_content_source_is_selected_by_name(
    settings: Settings, space: Path, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    import msgspec

    local = msgspec.structs.replace(settings, content_source="plugin:files")
    plugin = Plugin(name="files", content_source=lambda: OnlyLoads(space), attributes=[Tiers({"g": "gold"})])
    with TestClient(create_app(local, plugins=[plugin], discover_plugins=False)) as client:
        assert _hero(client, delivery, "g")["experience"] == "hero-sale"  # the plugin's space is served
    with pytest.raises(ValueError, match="no plugin named 'nothing'"):
        from api.plugins import load_plugins
        from api.runtime import content_source_for

        content_source_for(msgspec.structs.replace(settings, content_source="plugin:nothing"),
                           load_plugins([plugin], discover=False))
