"""Content sources: the export file, and a live space through the real ``contentful`` SDK.

ContentfulSource runs against a local fake of the CDA that serves the same demo export, so the
strongest check is that both paths compile to the same snapshot.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import contentful
import pytest
from contentful.errors import ServerError, UnauthorizedError

from content import (
    ContentAccessError,
    ContentFormatError,
    ContentfulSource,
    ContentSnapshot,
    ContentSource,
    ContentSourceError,
    ExportFileSource,
    compile_snapshot,
    demo_space_path,
)
from tests.content.contentful_server import FakeContentful, Fault
from tests.content.live_sources import delivery_source
from tests.content.spaces import entry, unpublish

Export = dict[str, Any]


def write(tmp_path: Path, export: Any) -> Path:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    return path


# -- export file -------------------------------------------------------------------------------------


def test_demo_export_file() -> None:
    items = ExportFileSource(demo_space_path()).load()

    assert set(items.content_types) == {"hero", "banner", "varyAudience", "varyExperience", "varyJourney", "varySettings", "varySurvey"}
    assert [(loc.code, loc.default, loc.fallback_code) for loc in items.locales] == [
        ("en-US", True, None), ("de-DE", False, "en-US"),
    ]
    assert len(items.entries) == 19 and [a.id for a in items.assets] == ["heroImage"]
    hero = next(e for e in items.entries if e.id == "heroHome")
    assert hero.content_type == "hero"
    assert hero.fields["de-DE"]["ctaLabel"] == "Jetzt entdecken"
    assert "ctaUrl" not in hero.fields["de-DE"]  # not localized: only under the default locale
    assert hero.updated_at == "2025-06-02T08:45:13.512Z"
    assert hero.created_at == "2025-05-12T15:20:00.000Z"
    assert items.content_types["hero"].field("image").link_type == "Asset"  # type: ignore[union-attr]


def test_export_file_serves_only_published_entries(tmp_path: Path, demo_export: Export) -> None:
    draft = copy.deepcopy(entry(demo_export, "heroHome"))
    draft["sys"]["id"] = "heroDraft"
    demo_export["entries"].append(draft)
    unpublish(demo_export, "heroDraft")
    unpublish(demo_export, "bannerShippingFast")

    ids = {e.id for e in ExportFileSource(write(tmp_path, demo_export)).load().entries}
    assert "heroDraft" not in ids and "bannerShippingFast" not in ids
    assert "heroHome" in ids


def test_export_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ContentSourceError, match="cannot read the export file"):
        ExportFileSource(tmp_path / "missing.json").load()

    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ContentFormatError, match="not valid JSON"):
        ExportFileSource(broken).load()

    with pytest.raises(ContentFormatError, match="not a Contentful space export"):
        ExportFileSource(write(tmp_path, [1, 2])).load()


def test_sources_implement_the_protocol(contentful_server: FakeContentful) -> None:
    assert isinstance(ExportFileSource(demo_space_path()), ContentSource)
    assert isinstance(delivery_source(contentful_server), ContentSource)


# -- a live space through the contentful SDK ---------------------------------------------------------


def assert_same_snapshot(live: ContentSnapshot, exported: ContentSnapshot) -> None:
    assert live.version == exported.version
    assert live.entries == exported.entries
    assert live.experiences == exported.experiences
    assert live.audiences == exported.audiences
    assert live.issues == exported.issues == ()
    assert live.locales == exported.locales
    for entry_id in exported.entries:
        for locale in exported.locales:
            assert bytes(live.fields(entry_id, locale)) == bytes(exported.fields(entry_id, locale))
        assert live.experiences_for(entry_id) == exported.experiences_for(entry_id)


def test_contentful_source_matches_the_export_file(contentful_server: FakeContentful) -> None:
    source = delivery_source(contentful_server)
    live = compile_snapshot(source.load())
    exported = compile_snapshot(ExportFileSource(demo_space_path()).load())

    assert_same_snapshot(live, exported)
    assert live.items is not None and live.items.assets == exported.items.assets  # type: ignore[union-attr]

    # 20 items (19 entries, 1 asset) in pages of 3: the SDK followed nextPageUrl six times, then kept
    # the sync token.
    syncs = contentful_server.requests_to("sync")
    assert len(syncs) == math.ceil(20 / 3)
    assert syncs[0].query == {"initial": "true"}
    assert all("sync_token" in request.query for request in syncs[1:])
    assert source.sync_token is not None
    assert syncs[0].headers["Authorization"] == f"Bearer {contentful_server.access_token}"
    assert "app vary" in syncs[0].headers["X-Contentful-User-Agent"]


def test_sync_token_continues_from_where_the_load_ended(contentful_server: FakeContentful) -> None:
    source = delivery_source(contentful_server)
    source.load()
    contentful_server.mutate(lambda export: unpublish(export, "bannerShippingFast"))

    client = contentful.Client(
        contentful_server.space_id, contentful_server.access_token,
        api_url=contentful_server.api_url, https=False, content_type_cache=False,
    )
    changes = client.sync({"sync_token": source.sync_token})
    assert [(type(item).__name__, item.id) for item in changes.items] == [
        ("DeletedEntry", "bannerShippingFast")
    ]


def test_reload_sees_changes(contentful_server: FakeContentful) -> None:
    source = delivery_source(contentful_server)
    before = compile_snapshot(source.load())
    first_token = source.sync_token
    contentful_server.mutate(lambda export: unpublish(export, "bannerShippingFast"))
    after = compile_snapshot(source.load())

    assert not after.has_entry("bannerShippingFast") and before.has_entry("bannerShippingFast")
    assert after.version != before.version
    assert source.sync_token != first_token
    # The A/B test lost a variant and its three weights no longer fit: switched off, reported.
    assert "banner-shipping-test" not in after.experiences
    assert [issue.entry_id for issue in after.issues] == ["bannerShippingTest"]


def test_wrong_token_is_a_clear_error(contentful_server: FakeContentful) -> None:
    source = delivery_source(contentful_server, access_token="not-the-token")
    with pytest.raises(ContentAccessError) as caught:
        source.load()

    error = caught.value
    assert error.status == 401
    assert str(error).startswith(
        f"Contentful refused the access token for space '{contentful_server.space_id}' "
        f"(environment 'master') at {contentful_server.api_url} (HTTP 401: The access token you sent "
        "could not be found or is invalid.)"
    )
    assert isinstance(error.__cause__, UnauthorizedError)
    assert source.sync_token is None


def test_unknown_environment_is_an_access_error(contentful_server: FakeContentful) -> None:
    with pytest.raises(ContentAccessError, match=r"does not know space '\w+' \(environment 'staging'\)"):
        delivery_source(contentful_server, environment="staging").load()


def test_server_error_is_a_source_error(contentful_server: FakeContentful) -> None:
    contentful_server.faults.append(Fault(path="/sync", status=500))
    source = delivery_source(contentful_server)
    with pytest.raises(ContentSourceError, match="sync request .* HTTP 500") as caught:
        source.load()
    assert caught.value.status == 500 and isinstance(caught.value.__cause__, ServerError)

    assert len(source.load().entries) == 19  # the fault was spent; the next load works


def test_rate_limit_is_retried_after_the_reset(contentful_server: FakeContentful) -> None:
    contentful_server.faults.append(
        Fault(path="/sync", status=429, headers={"X-Contentful-RateLimit-Reset": "0"})
    )
    assert len(delivery_source(contentful_server).load().entries) == 19


def test_rate_limit_without_reset_header_is_a_source_error(contentful_server: FakeContentful) -> None:
    # contentful 2.5 crashes with KeyError on a 429 that lacks X-Contentful-RateLimit-Reset.
    contentful_server.faults.append(Fault(path="/locales", status=429))
    with pytest.raises(ContentSourceError, match="rate-limited") as caught:
        delivery_source(contentful_server).load()
    assert caught.value.status == 429


def test_unreachable_contentful_is_a_source_error() -> None:
    source = ContentfulSource("space", "token", api_url="127.0.0.1:9", https=False, timeout_s=1.0)
    with pytest.raises(ContentSourceError, match="could not reach Contentful"):
        source.load()


def test_no_process_wide_content_type_cache(contentful_server: FakeContentful) -> None:
    contentful.ContentTypeCache.__CACHE__.pop(contentful_server.space_id, None)
    delivery_source(contentful_server).load()
    assert contentful_server.space_id not in contentful.ContentTypeCache.__CACHE__
