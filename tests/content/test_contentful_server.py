"""The fake CDA itself: the real SDK (hydrating, not raw) must accept what it serves."""

from __future__ import annotations

import contentful
import pytest
from contentful.errors import BadRequestError, UnauthorizedError

from tests.content.contentful_server import FakeContentful


def client_for(server: FakeContentful, token: str | None = None) -> contentful.Client:
    return contentful.Client(
        server.space_id, token or server.access_token, api_url=server.api_url, https=False,
        content_type_cache=False,
    )


def test_entry_with_includes_and_fallback(contentful_server: FakeContentful) -> None:
    client = client_for(contentful_server)
    sale = client.entry("heroHomeSale", {"locale": "de-DE"})

    assert sale.title == "Sommer-Sale: bis zu 40 % auf Bestseller"
    assert sale.subtitle.startswith("Prices drop")  # de-DE falls back to en-US
    assert sale.cta_url == "/sale"
    assert sale.image.url().startswith("//images.ctfassets.net/")


def test_collections_page(contentful_server: FakeContentful) -> None:
    client = client_for(contentful_server)
    heroes = client.entries({"content_type": "hero", "limit": 2, "skip": 1})
    assert [e.id for e in heroes] == ["heroHomeCanada", "heroHomeSale"]
    assert heroes.total == 3
    assert [loc.code for loc in client.locales()] == ["en-US", "de-DE"]
    assert {ct.id for ct in client.content_types()} == {"hero", "banner", "varyAudience", "varyExperience", "varyJourney", "varySettings", "varySurvey"}


def test_initial_sync_pages(contentful_server: FakeContentful) -> None:
    client = client_for(contentful_server)
    page = client.sync({"initial": True})
    ids = [item.id for item in page.items]
    while page.next_page_url:
        page = client.sync({"sync_token": page.next_sync_token})
        ids += [item.id for item in page.items]
    assert len(ids) == len(set(ids)) == 20  # 19 entries + 1 asset
    assert page.next_sync_url and page.next_sync_token


def test_rejects_bad_token_and_unknown_locale(contentful_server: FakeContentful) -> None:
    with pytest.raises(UnauthorizedError):
        client_for(contentful_server, token="wrong").entries()
    with pytest.raises(BadRequestError):
        client_for(contentful_server).entries({"locale": "xx-XX"})
