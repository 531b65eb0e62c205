"""Links inside rich text and Object fields, resolved as the CDA does, on Contentful's own exports.

The exports in tests/fixtures/contentful/ were published by Contentful (README there); expectations
are read straight from the export JSON by the small walkers below, not from Vary's code.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from content.compile import compile_snapshot
from content.snapshot import ContentSnapshot
from content.sources import items_from_export

FIXTURES = Path(__file__).parents[1] / "fixtures" / "contentful"
EXPORTS = ("marketing-fintech-export.json", "cli-three-locale-export.json")
EMBEDS = {
    "embedded-entry-inline",
    "embedded-entry-block",
    "embedded-asset-block",
    "entry-hyperlink",
    "asset-hyperlink",
}


def _export(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def _rich_text_targets(node: Any) -> list[tuple[str, str, str]]:
    """(linkType, id, nodeType) of every embed/hyperlink node of a rich-text document."""
    found: list[tuple[str, str, str]] = []
    if isinstance(node, dict):
        if node.get("nodeType") in EMBEDS:
            sys = node["data"]["target"]["sys"]
            found.append((sys["linkType"], sys["id"], node["nodeType"]))
        for child in node.get("content", ()):
            found.extend(_rich_text_targets(child))
    return found


def _published_ids(export: dict[str, Any]) -> set[tuple[str, str]]:
    return {("Entry", e["sys"]["id"]) for e in export["entries"] if e["sys"].get("publishedVersion")} | {
        ("Asset", a["sys"]["id"]) for a in export["assets"] if a["sys"].get("publishedVersion")
    }


def _value(export: dict[str, Any], entity: dict[str, Any], field: str, locale: str) -> Any:
    """A field's value in a locale along the export's fallback chain (None: no value)."""
    fallbacks = {loc["code"]: loc.get("fallbackCode") for loc in export["locales"]}
    code: str | None = locale
    while code is not None:
        values = entity["fields"].get(field, {})
        if code in values:
            return values[code]
        code = fallbacks.get(code)
    return None


def _ids(raws: list[msgspec.Raw], cda: bool) -> set[str]:
    return {json.loads(bytes(raw))["sys"]["id"] if cda else json.loads(bytes(raw))["id"] for raw in raws}


def _snapshot(export: dict[str, Any], link_depth: int = 2) -> ContentSnapshot:
    return compile_snapshot(items_from_export(export), link_depth=link_depth)


@pytest.mark.parametrize("name", EXPORTS)
def test_every_rich_text_embed_is_included_in_both_shapes(name: str) -> None:
    export = _export(name)
    snapshot = _snapshot(export)
    published = _published_ids(export)
    types = {ct["sys"]["id"]: ct for ct in export["contentTypes"]}
    kinds: set[str] = set()
    for entry in export["entries"]:
        rich = [
            f["id"]
            for f in types[entry["sys"]["contentType"]["sys"]["id"]]["fields"]
            if f["type"] == "RichText"
        ]
        for locale in snapshot.locales:
            nodes = [
                node for field in rich for node in _rich_text_targets(_value(export, entry, field, locale))
            ]
            targets = {(kind, target) for kind, target, _ in nodes if (kind, target) in published}
            if not targets:
                continue
            kinds.update(node_type for kind, target, node_type in nodes if (kind, target) in published)
            for cda in (True, False):
                entries, assets = snapshot.links.includes([entry["sys"]["id"]], locale, cda=cda)
                included = {("Entry", i) for i in _ids(entries, cda)} | {
                    ("Asset", i) for i in _ids(assets, cda)
                }
                expected = targets - {("Entry", entry["sys"]["id"])}
                assert expected <= included, (name, entry["sys"]["id"], locale, cda, expected - included)
    assert "embedded-entry-block" in kinds  # the exports really do embed entries in rich text


@pytest.mark.parametrize("name", EXPORTS)
def test_cda_shape_reads_every_field_as_the_export_holds_it(name: str) -> None:
    """``sys``/``fields`` per locale: the export's value along the fallback chain, links as links."""
    export = _export(name)
    snapshot = _snapshot(export)
    types = {ct["sys"]["id"]: ct for ct in export["contentTypes"]}
    reads = 0
    for entry in export["entries"]:
        content_type = types[entry["sys"]["contentType"]["sys"]["id"]]
        for locale in snapshot.locales:
            sys, fields = snapshot.links.cda_entry(entry["sys"]["id"], locale)
            sys, fields = json.loads(bytes(sys)), json.loads(bytes(fields))
            assert sys["id"] == entry["sys"]["id"] and sys["type"] == "Entry" and sys["locale"] == locale
            assert sys["contentType"]["sys"]["id"] == content_type["sys"]["id"]
            for field in content_type["fields"]:
                if field["id"] == "nt_experiences" or field.get("omitted"):
                    assert field["id"] not in fields
                    continue
                read_locale = locale if field.get("localized") else snapshot.default_locale
                expected = _value(export, entry, field["id"], read_locale)
                assert fields.get(field["id"]) == expected, (entry["sys"]["id"], locale, field["id"])
                reads += 1
    assert reads > 500


def test_assets_in_includes_carry_the_file_url_contentful_gives() -> None:
    export = _export("marketing-fintech-export.json")
    snapshot = _snapshot(export)
    urls = {a["sys"]["id"]: a["fields"]["file"]["en-US"]["url"] for a in export["assets"]}
    seen = 0
    for entry_id in snapshot.entries:
        _, assets = snapshot.links.includes([entry_id], "de-DE", cda=True)
        for raw in assets:
            asset = json.loads(bytes(raw))
            assert asset["fields"]["file"]["url"] == urls[asset["sys"]["id"]]
            assert asset["metadata"] == {"tags": [], "concepts": []}
            seen += 1
        _, compact = snapshot.links.includes([entry_id], "de-DE", cda=False)
        for raw in compact:
            asset = json.loads(bytes(raw))
            assert asset["url"] == "https:" + urls[asset["id"]]
    assert seen > 0


def test_each_entity_is_included_once_and_the_answers_own_entries_not_at_all() -> None:
    snapshot = _snapshot(_export("cli-three-locale-export.json"))
    roots = [
        entry_id for entry_id in snapshot.entries if snapshot.links.includes([entry_id], "en-US", cda=True)[0]
    ]
    entries, assets = snapshot.links.includes([*roots, *roots], "en-US", cda=True)
    entry_ids = [json.loads(bytes(raw))["sys"]["id"] for raw in entries]
    asset_ids = [json.loads(bytes(raw))["sys"]["id"] for raw in assets]
    assert len(entry_ids) == len(set(entry_ids)) and len(asset_ids) == len(set(asset_ids))
    assert not set(entry_ids) & set(roots)


def test_includes_read_any_iterable_of_roots_and_nothing_for_a_locale_without_links() -> None:
    snapshot = _snapshot(_export("cli-three-locale-export.json"))
    roots = list(snapshot.entries)
    for cda in (True, False):
        listed = snapshot.links.includes(roots, "en-US", cda=cda)
        assert snapshot.links.includes(iter(roots), "en-US", cda=cda) == listed
        assert snapshot.links.includes(tuple(roots[::-1] + roots), "en-US", cda=cda)[0] or not listed[0]
        assert snapshot.links.includes(roots, "xx-XX", cda=cda) == ([], [])
        assert snapshot.links.includes([], "en-US", cda=cda) == ([], [])


def test_link_depth_bounds_the_includes() -> None:
    """Depth 1: only what the entry links to; depth 2 adds what those link to (CDA ``include``)."""
    export = _export("marketing-fintech-export.json")
    shallow, deep = _snapshot(export, link_depth=1), _snapshot(export, link_depth=2)
    by_id = {e["sys"]["id"]: e for e in export["entries"]}
    grew = 0
    for entry_id in shallow.entries:
        one = _ids(shallow.links.includes([entry_id], "en-US", cda=True)[0], True)
        two = _ids(deep.links.includes([entry_id], "en-US", cda=True)[0], True)
        direct = {t for _, t in _links(by_id[entry_id]["fields"])} - {entry_id}
        assert one == direct & set(by_id)
        assert one <= two
        grew += len(two) > len(one)
    assert grew > 0


def _links(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        sys = value.get("sys")
        if isinstance(sys, dict) and sys.get("type") == "Link" and sys.get("linkType") == "Entry":
            return [("Entry", sys["id"])]
        return [link for item in value.values() for link in _links(item)]
    if isinstance(value, list):
        return [link for item in value for link in _links(item)]
    return []


def test_inline_entries_and_asset_blocks_are_included() -> None:
    """Neither export embeds an entry inline or an asset as a block, so a real article's body gets
    one of each appended here, in memory, in the rich-text spec's node shapes."""
    export = copy.deepcopy(_export("cli-three-locale-export.json"))
    article = next(
        e for e in export["entries"] if e["sys"]["contentType"]["sys"]["id"] == "knowledgeBaseArticle"
    )
    body_field = next(
        name
        for name, values in article["fields"].items()
        if isinstance(values.get("en-US"), dict) and values["en-US"].get("nodeType") == "document"
    )
    other = next(
        e["sys"]["id"]
        for e in export["entries"]
        if e["sys"]["contentType"]["sys"]["id"] == "knowledgeBaseArticle"
        and e["sys"]["id"] != article["sys"]["id"]
    )
    asset_id = export["assets"][1]["sys"]["id"]
    article["fields"][body_field]["en-US"]["content"] += [
        {
            "nodeType": "paragraph",
            "data": {},
            "content": [
                {
                    "nodeType": "embedded-entry-inline",
                    "content": [],
                    "data": {"target": {"sys": {"id": other, "type": "Link", "linkType": "Entry"}}},
                },
            ],
        },
        {
            "nodeType": "embedded-asset-block",
            "content": [],
            "data": {"target": {"sys": {"id": asset_id, "type": "Link", "linkType": "Asset"}}},
        },
    ]
    snapshot = _snapshot(export)
    for locale in snapshot.locales:  # es and zh-Hant-TW fall back to the en-US body
        for cda in (True, False):
            entries, assets = snapshot.links.includes([article["sys"]["id"]], locale, cda=cda)
            assert other in _ids(entries, cda) and asset_id in _ids(assets, cda)


def test_links_inside_object_fields_are_included() -> None:
    """A Studio page keeps its bound entries and assets in the ``dataSource`` Object field. The CLI
    space defines that content type (``pageExperience``) but holds no page, so one is added here,
    in memory, in the shape Studio writes, bound to an entry and an asset of the space."""
    export = copy.deepcopy(_export("cli-three-locale-export.json"))
    entry_id = next(
        e["sys"]["id"]
        for e in export["entries"]
        if e["sys"]["contentType"]["sys"]["id"] == "knowledgeBaseArticle"
    )
    asset_id = export["assets"][0]["sys"]["id"]
    page = copy.deepcopy(export["entries"][0])
    page["sys"].update(
        id="studioPage",
        contentType={"sys": {"type": "Link", "linkType": "ContentType", "id": "pageExperience"}},
    )
    page["fields"] = {
        "title": {"en-US": "Studio page"},
        "slug": {"en-US": "studio-page"},
        "dataSource": {
            "en-US": {
                "uuid1": {"sys": {"type": "Link", "linkType": "Entry", "id": entry_id}},
                "uuid2": {"sys": {"type": "Link", "linkType": "Asset", "id": asset_id}},
            }
        },
    }
    export["entries"].append(page)
    snapshot = _snapshot(export)
    for cda in (True, False):
        entries, assets = snapshot.links.includes(["studioPage"], "es", cda=cda)
        assert entry_id in _ids(entries, cda) and asset_id in _ids(assets, cda)


def test_drafts_in_an_export_are_reported_and_do_not_change_the_version() -> None:
    export = _export("marketing-fintech-export.json")
    clean = _snapshot(export)
    assert not clean.issues
    drafted = copy.deepcopy(export)
    entry = drafted["entries"][3]
    entry["sys"]["version"] = entry["sys"]["publishedVersion"] + 3  # saved twice after publishing
    snapshot = _snapshot(drafted)
    assert [(i.entry_id, i.content_type) for i in snapshot.issues] == [
        (entry["sys"]["id"], entry["sys"]["contentType"]["sys"]["id"])
    ]
    assert f"version {entry['sys']['version']}" in snapshot.issues[0].problem
    assert "publish" in snapshot.issues[0].fix
    assert snapshot.version == clean.version  # sys counters are not content
