"""Preview: drafts through the Content Preview API (the fake CDA's preview token), and the short cache.

The fake keeps drafts apart from what is published, so the same server shows both sides: the
preview source sees an edit the delivery source must not see until it is published.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from contentful.errors import UnauthorizedError

from content import (
    ContentAccessError,
    ContentItems,
    ContentSourceError,
    ExportFileSource,
    compile_snapshot,
    demo_space_path,
)
from content.preview import PreviewCache
from tests.content.contentful_server import FakeContentful
from tests.content.live_sources import delivery_source, preview_source
from tests.content.spaces import add_entry, set_field, unpublish

Export = dict[str, Any]


def title(items: ContentItems, entry_id: str, locale: str = "en-US") -> Any:
    return next(e for e in items.entries if e.id == entry_id).fields[locale]["title"]


def edit_drafts(export: Export) -> None:
    set_field(export, "heroHome", "title", "Draft headline")
    add_entry(export, "heroDraft", "hero", {"title": "Never published", "ctaUrl": "/draft"})
    unpublish(export, "heroDraft")


# -- PreviewSource ---------------------------------------------------------------------------------


def test_without_drafts_preview_shows_what_is_published(contentful_server: FakeContentful) -> None:
    preview = preview_source(contentful_server).load()
    published = ExportFileSource(demo_space_path()).load()

    assert {e.id: e.fields for e in preview.entries} == {e.id: e.fields for e in published.entries}
    assert [a.fields for a in preview.assets] == [a.fields for a in published.assets]
    assert preview.content_types == published.content_types and preview.locales == published.locales
    assert compile_snapshot(preview).issues == ()


def test_drafts_are_visible_in_preview_only(contentful_server: FakeContentful) -> None:
    contentful_server.draft(edit_drafts)

    preview = preview_source(contentful_server).load()
    assert title(preview, "heroHome") == "Draft headline"
    assert title(preview, "heroDraft") == "Never published"
    snapshot = compile_snapshot(preview)
    assert json.loads(bytes(snapshot.fields("heroHome", "en-US")))["title"] == "Draft headline"

    live = delivery_source(contentful_server).load()
    assert title(live, "heroHome") != "Draft headline"
    assert "heroDraft" not in {e.id for e in live.entries}
    assert contentful_server.requests_to("sync")  # delivery used the Sync API; preview did not
    assert all("/sync" not in r.path for r in contentful_server.requests if r.headers.get(
        "Authorization") == f"Bearer {contentful_server.preview_token}")


def test_a_draft_edit_moves_its_updated_at(contentful_server: FakeContentful) -> None:
    before = next(e for e in preview_source(contentful_server).load().entries if e.id == "heroHome")
    contentful_server.draft(lambda export: set_field(export, "heroHome", "title", "Draft headline"))
    after = next(e for e in preview_source(contentful_server).load().entries if e.id == "heroHome")
    assert after.updated_at != before.updated_at


def test_unpublished_entries_stay_in_preview(contentful_server: FakeContentful) -> None:
    contentful_server.mutate(lambda export: unpublish(export, "bannerShippingFast"))
    assert "bannerShippingFast" in {e.id for e in preview_source(contentful_server).load().entries}
    assert "bannerShippingFast" not in {e.id for e in delivery_source(contentful_server).load().entries}


def test_preview_pages_through_locale_star_collections(contentful_server: FakeContentful) -> None:
    items = preview_source(contentful_server, page_limit=4).load()

    assert len(items.entries) == 19 and len(items.assets) == 1
    entries = contentful_server.requests_to("entries")
    assert [r.query["skip"] for r in entries] == ["0", "4", "8", "12", "16"]
    assert all(r.query["locale"] == "*" and r.query["include"] == "0" for r in entries)
    assert all(r.query["order"] == "sys.id" for r in entries)
    assert [r.query["locale"] for r in contentful_server.requests_to("assets")] == ["*"]


def test_wrong_preview_token(contentful_server: FakeContentful) -> None:
    with pytest.raises(ContentAccessError, match="Content Preview API token") as caught:
        preview_source(contentful_server, preview_token=contentful_server.access_token + "x").load()
    assert caught.value.status == 401 and isinstance(caught.value.__cause__, UnauthorizedError)


def test_fake_preview_token_has_no_sync(contentful_server: FakeContentful) -> None:
    import contentful

    client = contentful.Client(
        contentful_server.space_id, contentful_server.preview_token, api_url=contentful_server.api_url,
        https=False, content_type_cache=False,
    )
    with pytest.raises(contentful.errors.BadRequestError):
        client.sync({"initial": True})
    contentful_server.draft(edit_drafts)
    assert client.entry("heroDraft").title == "Never published"  # hydrating client, single locale


# -- PreviewCache ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingSource:
    """The demo space, counting loads; ``fail`` makes the next loads raise."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.items = ExportFileSource(demo_space_path()).load()
        self.loads = 0
        self.fail: ContentSourceError | None = None
        self.delay_s = delay_s

    def load(self) -> ContentItems:
        self.loads += 1
        time.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return self.items


def test_cache_keeps_a_snapshot_for_its_ttl() -> None:
    source, clock = CountingSource(), Clock()
    cache = PreviewCache(source, ttl_s=5.0, clock=clock)

    first = cache.get()
    clock.now += 4.9
    assert cache.get() is first and source.loads == 1
    clock.now += 0.1
    second = cache.get()
    assert second is not first and source.loads == 2
    assert second.version == first.version

    cache.invalidate()
    assert cache.get() is not second and source.loads == 3


def test_cache_failure_raises_and_is_not_hammered() -> None:
    source, clock = CountingSource(), Clock()
    cache = PreviewCache(source, ttl_s=5.0, clock=clock, error_ttl_s=1.0)
    source.fail = ContentSourceError("Contentful is down", status=503)

    with pytest.raises(ContentSourceError, match="down"):
        cache.get()
    clock.now += 0.5
    with pytest.raises(ContentSourceError, match="down") as caught:
        cache.get()
    assert caught.value.status == 503 and source.loads == 1  # the remembered error

    clock.now += 0.5
    source.fail = None
    assert cache.get().has_entry("heroHome") and source.loads == 2


def test_cache_expired_snapshot_is_not_served_after_a_failed_reload() -> None:
    source, clock = CountingSource(), Clock()
    cache = PreviewCache(source, ttl_s=5.0, clock=clock)
    cache.get()
    clock.now += 5.0
    source.fail = ContentSourceError("down", status=502)
    with pytest.raises(ContentSourceError):
        cache.get()


def test_concurrent_callers_share_one_load() -> None:
    source = CountingSource(delay_s=0.05)
    cache = PreviewCache(source, ttl_s=5.0)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert source.loads == 1 and len(results) == 8 and all(r is results[0] for r in results)


def test_cache_over_the_preview_api(contentful_server: FakeContentful) -> None:
    clock = Clock()
    cache = PreviewCache(preview_source(contentful_server), ttl_s=5.0, clock=clock)
    before = cache.get()

    contentful_server.draft(lambda export: set_field(export, "heroHome", "title", "Draft headline"))
    assert cache.get() is before  # still cached
    clock.now += 5.0
    after = cache.get()
    assert json.loads(bytes(after.fields("heroHome")))["title"] == "Draft headline"
    assert after.version != before.version
