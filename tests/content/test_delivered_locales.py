"""Locales hidden from the delivery API are not served, not matched, and reported; ``metadata.tags``.

Real material: Contentful's three-locale CLI test space (tests/fixtures/contentful/), with its
``zh-Hant-TW`` locale switched off for the delivery API in a copy (``contentDeliveryApi: false``, as a
space export writes it; the published export has every locale on), and the Contentful Personalization
marketing export (tests/fixtures/ninetailed/), whose hero entries carry the content tag ``baseline``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from content.compile import compile_snapshot
from content.delivered_locales import delivered_locales
from content.items import ContentLocale
from content.snapshot import ContentSnapshot
from content.sources import items_from_export

FIXTURES = Path(__file__).parents[1] / "fixtures"
CLI = FIXTURES / "contentful" / "cli-three-locale-export.json"
MARKETING = FIXTURES / "ninetailed" / "marketing-contentful-next.json"
ARTICLE = "3DtCp1KFiZ2VquN5K5cZpU"  # title: en-US "How to find …", es "123", zh-Hant-TW "123"


def _space(hide: str | None = None) -> ContentSnapshot:
    export: dict[str, Any] = json.loads(CLI.read_text(encoding="utf-8"))
    for locale in export["locales"]:
        if locale["code"] == hide:
            locale["contentDeliveryApi"] = False
    return compile_snapshot(items_from_export(export))


def _title(snapshot: ContentSnapshot, locale: str) -> str:
    return msgspec.json.decode(snapshot.fields(ARTICLE, locale))["title"]


def test_a_hidden_locale_is_not_served_not_matched_and_reported() -> None:
    shown, hidden = _space(), _space(hide="zh-Hant-TW")
    assert shown.locale_for("zh-TW") == "zh-Hant-TW" and shown.issues == ()
    assert set(hidden.locales) == {"en-US", "es"}
    for tag in ("zh-Hant-TW", "zh-TW", "zh-Hant"):
        assert hidden.locale_for(tag) == "en-US"  # the default: no served Traditional Chinese locale
    assert _title(hidden, "zh-Hant-TW") == "How to find my customers feature requests in JIRA"
    assert _title(hidden, "es") == "123"
    assert all(code != "zh-Hant-TW" for _, _, code in hidden.links._cda)  # not in the CDA shape either
    (issue,) = hidden.issues
    assert (issue.entry_id, issue.content_type) == ("zh-Hant-TW", "locale")
    assert "contentDeliveryApi: false" in issue.problem and "Enable this locale in response" in issue.fix
    assert hidden.version != shown.version


def test_a_served_locale_falls_back_past_a_hidden_one() -> None:
    locales = (
        ContentLocale(code="en-US", default=True),
        ContentLocale(code="de-DE", fallback_code="en-US", delivery=False),
        ContentLocale(code="de-AT", fallback_code="de-CH"),
        ContentLocale(code="de-CH", fallback_code="de-DE", delivery=False),
        ContentLocale(code="x-a", fallback_code="x-b", delivery=False),
        ContentLocale(code="x-b", fallback_code="x-a", delivery=False),
        ContentLocale(code="fr", fallback_code="x-a"),
    )
    served, issues = delivered_locales(locales, "en-US")
    assert [(loc.code, loc.fallback_code) for loc in served] == [("en-US", None), ("de-AT", "en-US"), ("fr", None)]
    assert [i.entry_id for i in issues] == ["de-CH", "de-DE", "x-a", "x-b"]
    # the default locale is always served, even if an export marks it hidden
    served, issues = delivered_locales((ContentLocale(code="en-US", default=True, delivery=False),), "en-US")
    assert [loc.code for loc in served] == ["en-US"] and issues == ()


@pytest.fixture(scope="module")
def marketing() -> tuple[dict[str, Any], ContentSnapshot]:
    export = json.loads(MARKETING.read_text(encoding="utf-8"))
    return export, compile_snapshot(items_from_export(export))


def test_metadata_tags_come_from_the_export(marketing: tuple[dict[str, Any], ContentSnapshot]) -> None:
    export, snapshot = marketing
    tagged = {e["sys"]["id"]: e["metadata"] for e in export["entries"] if e.get("metadata", {}).get("tags")}
    assert len(tagged) == 6
    for entry_id, metadata in tagged.items():
        served = msgspec.json.decode(snapshot.links.cda_metadata(entry_id))
        assert served == {"tags": metadata["tags"], "concepts": []}
        assert snapshot.entries[entry_id].tags == ("baseline",)
    untagged = next(e["sys"]["id"] for e in export["entries"] if not e.get("metadata", {}).get("tags"))
    assert msgspec.json.decode(snapshot.links.cda_metadata(untagged)) == {"tags": [], "concepts": []}
