"""Small edits to a space export (management format) for building test fixtures from the demo space.

Fixtures start from the clean demo space and change one thing, so each test shows exactly which
mis-modelling it is about.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from content import ContentSnapshot, compile_snapshot
from content.sources import items_from_export
from personalization.decision.audience_validate import validate_condition

__all__ = [
    "DEMO_KEYS",
    "compile_export",
    "fields",
    "entry",
    "set_field",
    "remove_field",
    "unpublish",
    "add_entry",
    "add_content_type",
    "link",
]

Export = dict[str, Any]
#: The experience keys of the demo space.
DEMO_KEYS = {"hero-sale", "hero-north-america", "banner-shipping-test", "newsletter-copy"}


def compile_export(export: Export, **options: Any) -> ContentSnapshot:
    """Compile an export the way ExportFileSource + compile_snapshot would (as the app does: audience
    conditions checked by Vary's evaluator)."""
    options.setdefault("validate_condition", validate_condition)
    return compile_snapshot(items_from_export(export), **options)


def fields(snapshot: ContentSnapshot, entry_id: str, locale: str | None = None) -> dict[str, Any]:
    """An entry's fields as served in ``locale`` (the default locale when ``None``), decoded."""
    return msgspec.json.decode(snapshot.fields(entry_id, locale))


def link(entity_id: str, link_type: str = "Entry") -> dict[str, Any]:
    return {"sys": {"type": "Link", "linkType": link_type, "id": entity_id}}


def entry(export: Export, entry_id: str) -> dict[str, Any]:
    for item in export["entries"]:
        if item["sys"]["id"] == entry_id:
            return item
    raise KeyError(entry_id)


def set_field(export: Export, entry_id: str, field: str, value: Any, locale: str = "en-US") -> None:
    entry(export, entry_id)["fields"].setdefault(field, {})[locale] = value


def remove_field(export: Export, entry_id: str, field: str) -> None:
    del entry(export, entry_id)["fields"][field]


def unpublish(export: Export, entry_id: str) -> None:
    """Turn an entry into a draft that was never published."""
    sys = entry(export, entry_id)["sys"]
    for key in ("publishedVersion", "publishedAt", "firstPublishedAt", "publishedBy"):
        sys.pop(key, None)
    sys["publishedCounter"] = 0


def add_entry(
    export: Export, entry_id: str, content_type: str, fields: dict[str, Any], locale: str = "en-US"
) -> dict[str, Any]:
    """A published entry; ``fields`` are plain values, stored under ``locale``."""
    template = copy.deepcopy(export["entries"][0])
    template["sys"]["id"] = entry_id
    template["sys"]["contentType"] = link(content_type, "ContentType")
    template["fields"] = {name: {locale: value} for name, value in fields.items()}
    export["entries"].append(template)
    return template


def add_content_type(export: Export, type_id: str, fields: list[dict[str, Any]]) -> None:
    """A published content type with the given field definitions (management format)."""
    template = copy.deepcopy(export["contentTypes"][0])
    template["sys"]["id"] = type_id
    template["name"] = type_id
    template["displayField"] = fields[0]["id"]
    template["fields"] = [
        {"localized": False, "required": False, "validations": [], "disabled": False,
         "omitted": False, "name": f["id"], **f}
        for f in fields
    ]
    export["contentTypes"].append(template)
