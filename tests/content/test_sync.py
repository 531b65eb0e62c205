"""Incremental sync: an initial Sync API load, then only the changes, applied to the previous items.

Driven through the real ``contentful`` SDK against the fake CDA (sync pages of 3 items), and checked
against the strongest oracle there is: a fresh initial sync of the same space must compile to the
same snapshot as the chain of deltas.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from content import (
    ContentItems,
    ExportFileSource,
    SyncingSource,
    SyncResult,
    compile_snapshot,
    demo_space_path,
)
from content.errors import ContentSourceError
from tests.content.contentful_server import FakeContentful, Fault
from tests.content.live_sources import delivery_source
from tests.content.spaces import add_entry, entry, set_field, unpublish

Export = dict[str, Any]
DEMO_ENTITIES = 19 + 1 + 7 + 2  # entries, assets, content types, locales


def entry_ids(items: ContentItems) -> set[str]:
    return {e.id for e in items.entries}


def fields_of(items: ContentItems, entry_id: str) -> dict[str, dict[str, Any]]:
    return next(e for e in items.entries if e.id == entry_id).fields


def sync_requests_since(server: FakeContentful, count_before: int) -> list[dict[str, str]]:
    return [r.query for r in server.requests_to("sync")[count_before:]]


def assert_same_as_fresh_sync(server: FakeContentful, items: ContentItems) -> None:
    fresh = delivery_source(server).sync(None, None).items
    assert compile_snapshot(items).version == compile_snapshot(fresh).version


# -- the Sync API --------------------------------------------------------------------------------------


def test_initial_sync_pages_and_returns_a_token(contentful_server: FakeContentful) -> None:
    source = delivery_source(contentful_server)
    result = source.sync(None, None)

    assert isinstance(result, SyncResult)
    assert result.full and result.changed == DEMO_ENTITIES
    assert result.token is not None and result.token == source.sync_token
    exported = ExportFileSource(demo_space_path()).load()
    assert compile_snapshot(result.items).version == compile_snapshot(exported).version
    # 20 entities in pages of 3, plus one request each for locales and content types.
    syncs = sync_requests_since(contentful_server, 0)
    assert len(syncs) == math.ceil(20 / 3) and syncs[0] == {"initial": "true"}
    assert len(contentful_server.requests_to("locales")) == 1
    assert len(contentful_server.requests_to("content_types")) == 1


def test_each_kind_of_change_reaches_the_next_sync(contentful_server: FakeContentful) -> None:
    source = delivery_source(contentful_server)
    first = source.sync(None, None)
    first_items_copy = copy.deepcopy(first.items)
    tokens = [first.token]
    result = first

    def step(change: Any) -> SyncResult:
        nonlocal result
        contentful_server.mutate(change)
        before = len(contentful_server.requests_to("sync"))
        result = source.sync(result.items, result.token)
        assert not result.full
        assert all(set(query) == {"sync_token"} for query in sync_requests_since(contentful_server, before))
        assert result.token not in tokens  # the token advances every time
        tokens.append(result.token)
        return result

    changed = step(lambda export: set_field(export, "heroHome", "title", "New headline"))
    assert changed.changed == 1
    assert fields_of(changed.items, "heroHome")["en-US"]["title"] == "New headline"

    def add(export: Export) -> None:
        add_entry(export, "heroNew", "hero", {"title": "Brand new", "ctaUrl": "/new"})

    added = step(add)
    assert added.changed == 1 and "heroNew" in entry_ids(added.items)

    deleted = step(lambda export: export["entries"].remove(entry(export, "heroNew")))
    assert deleted.changed == 1 and "heroNew" not in entry_ids(deleted.items)

    unpublished = step(lambda export: unpublish(export, "bannerShippingFast"))
    assert unpublished.changed == 1 and "bannerShippingFast" not in entry_ids(unpublished.items)

    asset_gone = step(lambda export: export["assets"].clear())
    assert asset_gone.changed == 1 and asset_gone.items.assets == ()
    assert len(asset_gone.items.entries) == 18

    nothing = step(lambda export: None)
    assert nothing.changed == 0 and nothing.items == asset_gone.items

    # The first result was never touched, and the chain of deltas equals a fresh initial sync.
    assert first.items == first_items_copy and "bannerShippingFast" in entry_ids(first.items)
    assert_same_as_fresh_sync(contentful_server, result.items)


def test_delta_sync_pages(contentful_server: FakeContentful) -> None:
    source = delivery_source(contentful_server)
    first = source.sync(None, None)
    heroes_and_banners = sorted(e.id for e in first.items.entries if e.content_type in ("hero", "banner"))[:7]

    def retitle(export: Export) -> None:
        for entry_id in heroes_and_banners:
            set_field(export, entry_id, "title", f"Retitled {entry_id}")

    contentful_server.mutate(retitle)
    before = len(contentful_server.requests_to("sync"))
    result = source.sync(first.items, first.token)

    assert result.changed == 7 and not result.full
    assert len(sync_requests_since(contentful_server, before)) == math.ceil(7 / 3)
    for entry_id in heroes_and_banners:
        assert fields_of(result.items, entry_id)["en-US"]["title"] == f"Retitled {entry_id}"
    assert_same_as_fresh_sync(contentful_server, result.items)


def test_content_types_and_locales_are_fetched_on_every_sync(contentful_server: FakeContentful) -> None:
    source = delivery_source(contentful_server)
    first = source.sync(None, None)

    def new_field_and_locale(export: Export) -> None:
        hero = next(ct for ct in export["contentTypes"] if ct["sys"]["id"] == "hero")
        hero["fields"].append({"id": "badge", "name": "Badge", "type": "Symbol", "localized": True})
        french = copy.deepcopy(export["locales"][1])
        french.update(code="fr-FR", name="French (France)", default=False, fallbackCode="en-US")
        french["sys"]["id"] = "fr"
        export["locales"].append(french)

    contentful_server.mutate(new_field_and_locale)
    result = source.sync(first.items, first.token)

    assert result.changed == 2  # one content type, one locale; no entry changed
    assert result.items.content_types["hero"].field("badge") is not None
    assert [loc.code for loc in result.items.locales] == ["en-US", "de-DE", "fr-FR"]
    assert result.items.entries == first.items.entries
    assert len(contentful_server.requests_to("locales")) == len(contentful_server.requests_to("content_types")) == 2


def test_a_rejected_token_starts_over(contentful_server: FakeContentful) -> None:
    source = delivery_source(contentful_server)
    first = source.sync(None, None)
    contentful_server.mutate(lambda export: unpublish(export, "bannerShippingFast"))

    result = source.sync(first.items, "not-a-token-contentful-knows")

    assert result.full and result.changed == 1
    assert "bannerShippingFast" not in entry_ids(result.items)
    assert_same_as_fresh_sync(contentful_server, result.items)


def test_a_failed_delta_changes_nothing_and_can_be_repeated(contentful_server: FakeContentful) -> None:
    source = delivery_source(contentful_server)
    first = source.sync(None, None)
    contentful_server.mutate(lambda export: unpublish(export, "bannerShippingFast"))
    contentful_server.faults.append(Fault(path="/sync", status=503))

    with pytest.raises(ContentSourceError) as caught:
        source.sync(first.items, first.token)
    assert caught.value.status == 503
    assert source.sync_token == first.token and "bannerShippingFast" in entry_ids(first.items)

    result = source.sync(first.items, first.token)  # the same token again: the same changes
    assert result.changed == 1 and "bannerShippingFast" not in entry_ids(result.items)


def test_a_token_without_previous_items_is_an_initial_sync(contentful_server: FakeContentful) -> None:
    source = delivery_source(contentful_server)
    token = source.sync(None, None).token
    result = source.sync(None, token)
    assert result.full and len(result.items.entries) == 19
    assert source.load() == result.items  # load() is a full sync


# -- the export file -----------------------------------------------------------------------------------


def write_export(path: Path, export: Export, mtime_ns: int) -> None:
    path.write_text(json.dumps(export), encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_export_file_is_read_again_only_when_it_changed(tmp_path: Path, demo_export: Export) -> None:
    path = tmp_path / "space.json"
    write_export(path, demo_export, 1_700_000_000_000_000_000)
    source = ExportFileSource(path)

    first = source.sync(None, None)
    assert first.full and first.changed == DEMO_ENTITIES
    assert first.token == f"1700000000000000000:{path.stat().st_size}"

    unchanged = source.sync(first.items, first.token)
    assert unchanged == SyncResult(items=first.items, token=first.token, changed=0, full=False)
    assert unchanged.items is first.items

    set_field(demo_export, "heroHome", "title", "Edited in the file")
    write_export(path, demo_export, 1_700_000_001_000_000_000)
    edited = source.sync(first.items, first.token)
    assert edited.full and edited.changed == 1 and edited.token != first.token
    assert fields_of(edited.items, "heroHome")["en-US"]["title"] == "Edited in the file"

    os.utime(path, ns=(1_700_000_002_000_000_000,) * 2)  # touched, same content: read, nothing changed
    touched = source.sync(edited.items, edited.token)
    assert touched.changed == 0 and touched.token != edited.token and touched.items == edited.items


def test_export_file_sync_errors(tmp_path: Path) -> None:
    with pytest.raises(ContentSourceError, match="cannot read the export file"):
        ExportFileSource(tmp_path / "missing.json").sync(None, None)


def test_both_sources_are_syncing_sources(contentful_server: FakeContentful) -> None:
    assert isinstance(ExportFileSource(demo_space_path()), SyncingSource)
    assert isinstance(delivery_source(contentful_server), SyncingSource)
