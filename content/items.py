"""What a content source hands the compiler, and how Contentful's JSON becomes it.

Contentful shows the same entity in two wire formats that matter here: the management format (space
export files, webhooks: ``sys.version``/``publishedVersion``/``publishedAt``) and the delivery format
(CDA and Sync API: ``sys.revision``, ``createdAt`` = first published, ``updatedAt`` = last published).
Both keep fields keyed by locale (``{"title": {"en-US": "Hi"}}``) in exports and sync responses. The
parsers below read either, so both sources produce identical :class:`ContentItems` for the same
content — and therefore snapshots with the same version.

:class:`ContentItems` is a msgspec Struct, so it can be persisted (e.g. the last good load in Redis)
and compiled again after a restart.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from content.errors import ContentFormatError
from content.snapshot import ContentEntry

__all__ = [
    "ContentAsset",
    "ContentDraft",
    "ContentField",
    "ContentItems",
    "ContentLocale",
    "ContentTypeInfo",
    "asset_from_json",
    "content_type_from_json",
    "draft_from_json",
    "entry_from_json",
    "link_id",
    "locale_from_json",
]


class ContentField(Struct, frozen=True, kw_only=True):
    """One field of a content type: what the compiler needs to read its values.

    ``link_type`` is ``"Entry"`` or ``"Asset"`` for a Link field and for an Array of links;
    ``items_type`` is the element type of an Array. ``omitted`` fields are not delivered (Contentful's
    "hide from API responses").
    """

    id: str
    type: str
    localized: bool = False
    link_type: str | None = None
    items_type: str | None = None
    omitted: bool = False

    @property
    def holds_links(self) -> bool:
        """A Link field or an Array of links."""
        return self.type == "Link" or (self.type == "Array" and self.items_type == "Link")


class ContentTypeInfo(Struct, frozen=True, kw_only=True):
    """A content type: its id, name, display field and fields in editor order."""

    id: str
    name: str
    display_field: str | None = None
    fields: tuple[ContentField, ...] = ()

    def field(self, field_id: str) -> ContentField | None:
        """The field with this id, if the content type has it."""
        for candidate in self.fields:
            if candidate.id == field_id:
                return candidate
        return None


class ContentLocale(Struct, frozen=True, kw_only=True):
    """A locale of the space. ``fallback_code`` is where a missing value is looked up next."""

    code: str
    name: str = ""
    default: bool = False
    fallback_code: str | None = None
    #: ``False`` for a locale hidden from the delivery API (``contentDeliveryApi: false`` in an
    #: export): Vary does not serve it either (:mod:`content.delivered_locales`).
    delivery: bool = True


class ContentAsset(Struct, frozen=True, kw_only=True):
    """One published asset: ``fields`` is ``{locale: {"title"|"description"|"file": value}}``."""

    id: str
    fields: dict[str, dict[str, Any]]
    updated_at: str
    created_at: str = ""
    tags: tuple[str, ...] = ()
    concepts: tuple[str, ...] = ()


class ContentDraft(Struct, frozen=True, kw_only=True):
    """An entry whose export holds unpublished changes: ``version > published_version + 1``.

    ``contentful space export`` writes an entry's LATEST version (the draft), not the published
    one, so such an entry is served with changes nobody published. Only management-format sources
    (export files) can tell; the delivery API only ever has the published version.
    """

    entry_id: str
    content_type: str
    version: int
    published_version: int


class ContentItems(Struct, frozen=True, kw_only=True):
    """Everything a source loaded, normalized and not yet compiled: the compiler's only input.

    ``drafts`` is what the source knows about unpublished changes (export files only); it is not
    content, so it does not enter the snapshot's version hash.
    """

    content_types: dict[str, ContentTypeInfo]
    locales: tuple[ContentLocale, ...]
    entries: tuple[ContentEntry, ...]
    assets: tuple[ContentAsset, ...] = ()
    drafts: tuple[ContentDraft, ...] = ()


def link_id(value: object, link_type: str | None = None) -> str | None:
    """The target id of a Contentful link (``{"sys": {"type": "Link", "id": …}}``), else ``None``."""
    if not isinstance(value, dict):
        return None
    sys = value.get("sys")
    if not isinstance(sys, dict) or sys.get("type") != "Link":
        return None
    if link_type is not None and sys.get("linkType") != link_type:
        return None
    target = sys.get("id")
    return target if isinstance(target, str) and target else None


def content_type_from_json(item: dict[str, Any]) -> ContentTypeInfo:
    """A content type in management or delivery format."""
    sys = _sys(item, "ContentType")
    fields: list[ContentField] = []
    for raw in item.get("fields") or ():
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise ContentFormatError(f"content type {sys['id']!r} has a field without an id")
        items = raw.get("items") if isinstance(raw.get("items"), dict) else {}
        fields.append(
            ContentField(
                id=raw["id"],
                type=str(raw.get("type", "")),
                localized=bool(raw.get("localized", False)),
                link_type=raw.get("linkType") or items.get("linkType"),
                items_type=items.get("type"),
                omitted=bool(raw.get("omitted", False)),
            )
        )
    return ContentTypeInfo(
        id=sys["id"],
        name=str(item.get("name") or sys["id"]),
        display_field=item.get("displayField") or None,
        fields=tuple(fields),
    )


def locale_from_json(item: dict[str, Any]) -> ContentLocale:
    """A locale as the export file and the CDA's ``/locales`` give it."""
    code = item.get("code")
    if not isinstance(code, str) or not code:
        raise ContentFormatError(f"a locale has no code: {item!r:.200}")
    return ContentLocale(
        code=code,
        name=str(item.get("name") or code),
        default=bool(item.get("default", False)),
        fallback_code=item.get("fallbackCode") or None,
        delivery=item.get("contentDeliveryApi") is not False,
    )


def entry_from_json(item: dict[str, Any]) -> ContentEntry:
    """An entry with locale-keyed fields (export file or Sync API)."""
    sys = _sys(item, "Entry")
    content_type = link_id(sys.get("contentType"))
    if content_type is None:
        raise ContentFormatError(f"entry {sys['id']!r} has no content type link in sys.contentType")
    created_at, updated_at = _timestamps(sys)
    tags, concepts = _metadata(item)
    return ContentEntry(
        id=sys["id"],
        content_type=content_type,
        fields=_by_locale(item, sys["id"]),
        updated_at=updated_at,
        created_at=created_at,
        tags=tags,
        concepts=concepts,
    )


def draft_from_json(item: dict[str, Any]) -> ContentDraft | None:
    """The unpublished changes of an entry in management format, else ``None``.

    Contentful bumps ``sys.version`` on every save and on publishing, so a published entry with no
    later edits has ``version == publishedVersion + 1``; anything above was saved after publishing.
    """
    sys = _sys(item, "Entry")
    version, published = sys.get("version"), sys.get("publishedVersion")
    if not isinstance(version, int) or not isinstance(published, int) or version <= published + 1:
        return None
    return ContentDraft(
        entry_id=sys["id"],
        content_type=link_id(sys.get("contentType")) or "",
        version=version,
        published_version=published,
    )


def asset_from_json(item: dict[str, Any]) -> ContentAsset:
    """An asset with locale-keyed fields (export file or Sync API)."""
    sys = _sys(item, "Asset")
    created_at, updated_at = _timestamps(sys)
    tags, concepts = _metadata(item)
    return ContentAsset(
        id=sys["id"], fields=_by_locale(item, sys["id"]), updated_at=updated_at, created_at=created_at,
        tags=tags, concepts=concepts,
    )


def _metadata(item: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ids of an entity's ``metadata.tags`` (links to Tags) and ``metadata.concepts`` (links to
    TaxonomyConcepts), in the order given; anything else there is ignored."""
    metadata = item.get("metadata")
    if not isinstance(metadata, dict):
        return (), ()

    def ids(name: str, link_type: str) -> tuple[str, ...]:
        links = metadata.get(name)
        if not isinstance(links, list):
            return ()
        return tuple(dict.fromkeys(t for t in (link_id(link, link_type) for link in links) if t))

    return ids("tags", "Tag"), ids("concepts", "TaxonomyConcept")


def _sys(item: object, expected_type: str) -> dict[str, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("sys"), dict):
        raise ContentFormatError(f"expected a {expected_type} with a sys block, got {item!r:.200}")
    sys = item["sys"]
    if not isinstance(sys.get("id"), str) or not sys["id"]:
        raise ContentFormatError(f"a {expected_type} has no sys.id: {sys!r:.200}")
    if sys.get("type") not in (expected_type, None):
        raise ContentFormatError(f"{sys['id']!r} is a {sys.get('type')}, expected a {expected_type}")
    return sys


def _timestamps(sys: dict[str, Any]) -> tuple[str, str]:
    """(first published, last published): named so in management format, created/updated in delivery."""
    created = sys.get("firstPublishedAt") or sys.get("createdAt") or ""
    updated = sys.get("publishedAt") or sys.get("updatedAt") or created
    return str(created), str(updated)


def _by_locale(item: dict[str, Any], entity_id: str) -> dict[str, dict[str, Any]]:
    """Contentful's ``{field: {locale: value}}`` turned into ``{locale: {field: value}}``."""
    raw_fields = item.get("fields") or {}
    if not isinstance(raw_fields, dict):
        raise ContentFormatError(f"{entity_id!r} has fields that are not an object")
    by_locale: dict[str, dict[str, Any]] = {}
    for field_id, values in raw_fields.items():
        if not isinstance(values, dict):
            raise ContentFormatError(
                f"field {field_id!r} of {entity_id!r} is not keyed by locale "
                "(expected {\"en-US\": …}; single-locale delivery responses cannot be compiled)"
            )
        for locale, value in values.items():
            by_locale.setdefault(locale, {})[field_id] = value
    return by_locale
