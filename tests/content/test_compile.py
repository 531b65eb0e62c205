"""compile_snapshot: the demo space as modelled, locales and links as Contentful delivers them, and the
content-hash version. Mis-modelled spaces are in ``test_compile_issues.py``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec
import pytest

import content
from content import ContentSnapshot, compile_snapshot
from content.sources import items_from_export
from personalization.types import Audience
from tests.content.spaces import (
    DEMO_KEYS,
    add_content_type,
    add_entry,
    compile_export,
    entry,
    fields,
    link,
    set_field,
    unpublish,
)

Export = dict[str, Any]


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


@pytest.fixture
def demo(demo_export: Export) -> ContentSnapshot:
    return compile_export(demo_export)


# -- the demo space ----------------------------------------------------------------------------------


def test_demo_compiles_without_issues(demo: ContentSnapshot) -> None:
    assert demo.issues == ()
    assert set(demo.experiences) == DEMO_KEYS
    assert demo.default_locale == "en-US"
    assert dict(demo.locales) == {"en-US": None, "de-DE": "en-US"}
    assert len(demo.entries) == 19  # 17 + the two surveys (issue 24)
    assert demo.content_type_of("heroHome") == "hero"
    assert demo.content_type_of("nope") is None
    assert demo.has_entry("bannerShipping") and not demo.has_entry("nope")


def test_hero_experiences_in_priority_order(demo: ContentSnapshot) -> None:
    sale, north_america = demo.experiences_for("heroHome")

    assert sale.id == "expHeroSale" and sale.key == "hero-sale"
    assert sale.type == "personalization"
    assert sale.variants == ("heroHomeSale",)
    assert sale.weights == (0.0, 1.0)
    assert sale.holdout == 0.3 and sale.traffic_allocation == 1.0  # sized in docs/measurement.md
    assert sale.content_type == "hero"
    assert sale.goals == ("purchase",)
    assert sale.starts_at == utc(2025, 6, 1) and sale.ends_at is None
    assert sale.audience == Audience(
        id="priceSensitive", key="price_sensitive", name="Price-sensitive shoppers",
        condition={"segments.price_sensitive": {"$gte": 0.6}},
    )

    assert north_america.key == "hero-north-america"
    assert north_america.variants == ("heroHomeCanada",)
    assert north_america.weights == (0.0, 1.0) and north_america.holdout == 0.0
    assert north_america.audience is not None
    assert north_america.audience.condition == {"country": {"$in": ["CA", "US"]}}


def test_banner_ab_tests(demo: ContentSnapshot) -> None:
    (shipping,) = demo.experiences_for("bannerShipping")
    assert shipping.type == "ab_test"
    assert shipping.variants == ("bannerShippingFree", "bannerShippingFast")
    assert shipping.weights == (0.34, 0.33, 0.33)
    assert shipping.holdout == 0.05
    assert shipping.goals == ("signup", "purchase")
    assert shipping.audience is None
    assert (shipping.starts_at, shipping.ends_at) == (utc(2025, 6, 2), None)  # open-ended: no time bomb in the demo
    assert not shipping.is_running(utc(2025, 6, 1)) and shipping.is_running(utc(2030, 1, 1))

    (newsletter,) = demo.experiences_for("bannerNewsletter")
    assert newsletter.key == "newsletter-copy"
    assert newsletter.traffic_allocation == 0.5
    assert newsletter.weights == (0.5, 0.5)
    assert newsletter.audience is not None
    assert newsletter.audience.condition == {"channel": {"$in": ["web", "ios", "android"]}}
    assert demo.audiences["digitalChannels"] == newsletter.audience


def test_experiences_only_on_baselines(demo: ContentSnapshot) -> None:
    assert demo.experiences_for("heroHomeSale") == ()
    assert demo.experiences_for("expHeroSale") == ()
    assert demo.experiences_for("nope") == ()


# -- fields, locales, links --------------------------------------------------------------------------


def test_fields_per_locale_with_fallback(demo: ContentSnapshot) -> None:
    english = fields(demo, "heroHomeSale", "en-US")
    german = fields(demo, "heroHomeSale", "de-DE")

    assert english["title"] == "Summer sale: up to 40% off bestsellers"
    assert german["title"] == "Sommer-Sale: bis zu 40 % auf Bestseller"
    # No German subtitle: de-DE falls back to en-US field by field.
    assert german["subtitle"] == english["subtitle"]
    assert german["ctaLabel"] == "Zu den Angeboten"
    assert list(german) == ["title", "subtitle", "ctaLabel", "ctaUrl", "image"]  # content type order


def test_vary_wiring_is_not_content(demo: ContentSnapshot) -> None:
    assert "varyExperiences" not in fields(demo, "heroHome")
    assert "varyExperiences" not in fields(demo, "bannerShipping", "de-DE")


def test_locale_without_fallback_leaves_localized_fields_out(demo_export: Export) -> None:
    demo_export["locales"][1]["fallbackCode"] = None
    german = fields(compile_export(demo_export), "heroHomeSale", "de-DE")

    assert "subtitle" not in german
    assert german["title"] == "Sommer-Sale: bis zu 40 % auf Bestseller"
    assert german["ctaUrl"] == "/sale"  # not localized: always the default locale's value


def test_asset_links_become_absolute_https(demo: ContentSnapshot) -> None:
    image = fields(demo, "heroHome", "de-DE")["image"]
    assert image == {
        "id": "heroImage",
        "title": "Helles Wohnzimmer mit Leinensofa",
        "description": "A sunlit living room: linen sofa, oak side table and a wool rug.",
        "url": "https://images.ctfassets.net/varydemo0001/heroImage/"
        "7d5e3c1f0b2a4e8f9c6d1a2b3c4d5e6f/living-room.jpg",
        "content_type": "image/jpeg",
        "width": 1600,
        "height": 900,
        "size": 184532,
    }
    assert fields(demo, "heroHome", "en-US")["image"]["title"] == "Bright living room with a linen sofa"


def test_entry_links_resolved_to_depth_two(demo: ContentSnapshot) -> None:
    experience = fields(demo, "expHeroSale")
    (variant,) = experience["variants"]
    assert variant["id"] == "heroHomeSale" and variant["content_type"] == "hero"
    assert variant["fields"]["title"] == "Summer sale: up to 40% off bestsellers"
    assert variant["fields"]["image"]["url"].startswith("https://images.ctfassets.net/")
    assert experience["audience"]["fields"]["segment"] == "price_sensitive"


def test_rich_text_passes_through(demo: ContentSnapshot, demo_export: Export) -> None:
    details = fields(demo, "bannerNewsletter", "de-DE")["details"]
    assert details == entry(demo_export, "bannerNewsletter")["fields"]["details"]["de-DE"]
    assert details["nodeType"] == "document"


def _page_space(export: Export) -> None:
    add_content_type(export, "page", [
        {"id": "title", "type": "Symbol", "localized": True},
        {"id": "related", "type": "Link", "linkType": "Entry"},
        {"id": "more", "type": "Array", "items": {"type": "Link", "linkType": "Entry"}},
    ])


def test_link_cycles_terminate(demo_export: Export) -> None:
    _page_space(demo_export)
    add_entry(demo_export, "pageA", "page", {"title": "A", "related": link("pageB")})
    add_entry(demo_export, "pageB", "page", {"title": "B", "related": link("pageA")})
    snapshot = compile_export(demo_export, link_depth=5)

    assert fields(snapshot, "pageA") == {
        "title": "A",
        "related": {
            "id": "pageB",
            "content_type": "page",
            "fields": {"title": "B", "related": {"id": "pageA", "content_type": "page"}},
        },
    }
    self_link = fields(snapshot, "pageB")["related"]["fields"]["related"]
    assert self_link == {"id": "pageB", "content_type": "page"}


def test_link_depth_limits_embedding(demo_export: Export) -> None:
    _page_space(demo_export)
    for name, target in (("A", "B"), ("B", "C"), ("C", "D"), ("D", None)):
        extra = {"related": link(f"page{target}")} if target else {}
        add_entry(demo_export, f"page{name}", "page", {"title": name, **extra})

    two = fields(compile_export(demo_export), "pageA")
    assert two["related"]["fields"]["related"]["fields"]["related"] == {"id": "pageD", "content_type": "page"}

    zero = fields(compile_export(demo_export, link_depth=0), "pageA")
    assert zero["related"] == {"id": "pageB", "content_type": "page"}


def test_links_to_unpublished_entries_are_dropped(demo_export: Export) -> None:
    _page_space(demo_export)
    add_entry(demo_export, "pageDraft", "page", {"title": "Draft"})
    unpublish(demo_export, "pageDraft")
    add_entry(demo_export, "pageA", "page", {
        "title": "A", "related": link("pageDraft"), "more": [link("pageDraft"), link("heroHome")],
    })
    page = fields(compile_export(demo_export), "pageA")

    assert "related" not in page
    assert [item["id"] for item in page["more"]] == ["heroHome"]


def test_unknown_locale_serves_the_default(demo: ContentSnapshot) -> None:
    assert demo.fields("heroHome", "fr-FR") == demo.fields("heroHome", "en-US")
    assert demo.fields("heroHome") == demo.fields("heroHome", "en-US")
    assert fields(demo, "heroHome", "xx")["title"] == "Everything for your home, delivered tomorrow"


@pytest.mark.parametrize(
    ("requested", "served"),
    [
        ("de-DE", "de-DE"), ("de-AT", "de-DE"), ("de", "de-DE"), ("DE-de", "de-DE"), ("de_CH", "de-DE"),
        ("en-US", "en-US"), ("en-GB", "en-US"), ("fr-FR", "en-US"), ("", "en-US"), (None, "en-US"),
    ],
)
def test_locale_for(demo: ContentSnapshot, requested: str | None, served: str) -> None:
    assert demo.locale_for(requested) == served


def test_region_variant_gets_the_language(demo: ContentSnapshot) -> None:
    assert demo.fields("heroHome", "de-AT") == demo.fields("heroHome", "de-DE")


def test_unknown_entry_raises_key_error(demo: ContentSnapshot) -> None:
    with pytest.raises(KeyError):
        demo.fields("nope", "en-US")


# -- versions and immutability -----------------------------------------------------------------------


def test_version_is_a_content_hash(demo_export: Export) -> None:
    items = items_from_export(demo_export)
    first = compile_snapshot(items, now=1.0)
    shuffled = msgspec.structs.replace(items, entries=tuple(reversed(items.entries)))
    assert compile_snapshot(shuffled, now=2.0).version == first.version
    assert len(first.version) == 12 and int(first.version, 16) >= 0
    assert first.created_at == 1.0

    set_field(demo_export, "heroHome", "title", "Changed")
    assert compile_export(demo_export).version != first.version
    assert compile_snapshot(items, link_depth=1).version != first.version


def test_snapshot_is_immutable(demo: ContentSnapshot) -> None:
    with pytest.raises(AttributeError):
        demo.version = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        demo.entries["x"] = demo.entries["heroHome"]  # type: ignore[index]


def test_exported_surface() -> None:
    assert set(content.__all__) == {
        "ContentSnapshot", "ContentEntry", "ContentIssue", "ContentItems", "compile_snapshot",
        "ContentSource", "SyncingSource", "SyncResult", "ExportFileSource", "ContentfulSource", "demo_space_path",
        "ContentSourceError", "ContentAccessError", "ContentFormatError",
    }
    for name in content.__all__:
        assert getattr(content, name) is not None
