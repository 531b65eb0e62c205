"""Requested language tags matched to a space's locales by BCP 47 rules (content.locales), on
Contentful's three-locale CLI test space (en-US default; es and zh-Hant-TW fall back to en-US)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from content.compile import compile_snapshot
from content.locales import LocaleMatcher, script_of
from content.snapshot import ContentSnapshot
from content.sources import items_from_export

EXPORT = Path(__file__).parents[1] / "fixtures" / "contentful" / "cli-three-locale-export.json"


@pytest.fixture(scope="module")
def space() -> ContentSnapshot:
    return compile_snapshot(items_from_export(json.loads(EXPORT.read_text())))


@pytest.mark.parametrize(
    ("requested", "served"),
    [
        ("en_US", "en-US"),
        ("EN_us", "en-US"),
        ("en-GB", "en-US"),
        ("en", "en-US"),
        ("es", "es"),
        ("es-MX", "es"),
        ("es_419", "es"),
        ("ES", "es"),
        ("zh-Hant-TW", "zh-Hant-TW"),
        ("zh_Hant_HK", "zh-Hant-TW"),
        ("zh-Hant", "zh-Hant-TW"),
        ("zh-TW", "zh-Hant-TW"),
        ("zh-HK", "zh-Hant-TW"),
        # Simplified Chinese is not served Traditional: the default locale instead
        ("zh-CN", "en-US"),
        ("zh-Hans-CN", "en-US"),
        ("zh", "en-US"),
        ("zh-SG", "en-US"),
        ("fr-FR", "en-US"),
        ("", "en-US"),
        (None, "en-US"),
    ],
)
def test_locale_for_follows_bcp47(space: ContentSnapshot, requested: str | None, served: str) -> None:
    assert space.locale_for(requested) == served


def test_lookup_prefers_the_longest_matching_prefix_and_then_the_default_of_the_language() -> None:
    matcher = LocaleMatcher(["en-US", "de-CH", "de-DE", "sr-Latn-ME", "pt-BR"], "en-US")
    assert matcher.match("de-CH-1996") == "de-CH"  # truncation: de-CH-1996 → de-CH
    assert matcher.match("de-AT") == "de-CH"  # no default of that language: the space's order
    assert matcher.match("sr-ME") == "sr-Latn-ME" and matcher.match("sr-RS") == "en-US"  # Cyrillic ≠ Latin
    assert matcher.match("pt") == "pt-BR" and matcher.match("pt_PT") == "pt-BR"


def test_scripts_are_read_from_the_tag_or_implied_by_the_region() -> None:
    assert [script_of(t) for t in ("zh-hant-tw", "zh-cn", "zh-tw", "zh", "sr-me", "de-de")] == [
        "hant",
        "hans",
        "hant",
        "hans",
        "latn",
        None,
    ]


def test_every_served_locale_follows_its_fallback_chain(space: ContentSnapshot) -> None:
    """A field the es and zh-Hant-TW locales leave empty is read from en-US, as Contentful does."""
    export = json.loads(EXPORT.read_text())
    localized = {
        (ct["sys"]["id"], f["id"])
        for ct in export["contentTypes"]
        for f in ct["fields"]
        if f.get("localized")
    }
    filled = 0
    for entry in export["entries"]:
        for field, values in entry["fields"].items():
            if (entry["sys"]["contentType"]["sys"]["id"], field) not in localized or "en-US" not in values:
                continue
            for locale in ("es", "zh-Hant-TW"):
                if locale in values:
                    continue
                _, fields = space.links.cda_entry(entry["sys"]["id"], space.locale_for(locale))
                assert json.loads(bytes(fields))[field] == values["en-US"]
                filled += 1
    assert filled > 0
