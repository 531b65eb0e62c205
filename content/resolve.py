"""An entry's fields as a front end wants them: one locale, fallbacks applied, links resolved.

This is Contentful's delivery behaviour, done once at compile time instead of per request:

- **Fallback, field by field.** A field with no value in the requested locale takes the value of the
  locale's ``fallbackCode``, then that locale's fallback, and so on; a chain that ends without a value
  leaves the field out. Non-localized fields always read the default locale (where Contentful keeps
  them).
- **Links.** A link to an entry becomes ``{"id", "content_type", "fields"}`` up to ``link_depth`` levels
  deep; deeper, or back to an entry already on the path (A → B → A), it stays a stub
  ``{"id", "content_type"}``, so cycles terminate. A link to an asset becomes
  ``{"id", "title", "description", "url", "content_type", "width", "height", "size"}`` with an
  absolute ``https:`` URL (Contentful's are protocol-relative). A link to something unpublished is
  dropped, as the CDA does.
- Rich text and Object fields pass through untouched, except that merge tags (``nt_mergetag``
  entries embedded inline in rich text) become text nodes filled per visitor (:mod:`content.mergetags`).
  ``varyExperiences`` and ``nt_experiences`` are wiring, not content, and are left out.
"""

from __future__ import annotations

from typing import Any

from content.items import ContentAsset, ContentField, ContentItems, ContentTypeInfo, link_id
from content.mergetags import MERGETAG_TYPE, MergeTagRegistry
from content.snapshot import ContentEntry

__all__ = ["EXPERIENCES_FIELD", "NT_EXPERIENCES_FIELD", "FieldResolver", "absolute_url", "fallback_chain"]

#: The field that attaches experiences to an entry (DESIGN §3).
EXPERIENCES_FIELD = "varyExperiences"
#: The same wiring in a space modelled for Contentful Personalization (Ninetailed).
NT_EXPERIENCES_FIELD = "nt_experiences"
_WIRING_FIELDS = frozenset({EXPERIENCES_FIELD, NT_EXPERIENCES_FIELD})

_MISSING = object()


def fallback_chain(locale: str, fallbacks: dict[str, str | None]) -> tuple[str, ...]:
    """``locale`` followed by its fallbacks in order; stops at a repeat, so a cycle cannot loop."""
    chain: list[str] = []
    code: str | None = locale
    while code is not None and code not in chain:
        chain.append(code)
        code = fallbacks.get(code)
    return tuple(chain)


class FieldResolver:
    """Resolves entries of one set of items; build once per compile, call per (entry, locale)."""

    def __init__(self, items: ContentItems, *, default_locale: str, link_depth: int = 2) -> None:
        if link_depth < 0:
            raise ValueError("link_depth must be >= 0")
        self._entries: dict[str, ContentEntry] = {entry.id: entry for entry in items.entries}
        self._assets: dict[str, ContentAsset] = {asset.id: asset for asset in items.assets}
        self._types: dict[str, ContentTypeInfo] = items.content_types
        self._default_locale = default_locale
        self._link_depth = link_depth
        fallbacks = {locale.code: locale.fallback_code for locale in items.locales}
        self._chains = {code: fallback_chain(code, fallbacks) for code in fallbacks}
        #: Merge tags met so far (see :mod:`content.mergetags`).
        self.merge_tags = MergeTagRegistry()

    def entry_fields(self, entry_id: str, locale: str) -> dict[str, Any]:
        """The fields of one entry in one locale (see the module docstring for the rules)."""
        return self._fields(self._entries[entry_id], locale, self._link_depth, (entry_id,))

    def asset_fields(self, asset_id: str, locale: str) -> dict[str, Any] | None:
        """A published asset as a link to it resolves (see above) in one locale; else ``None``."""
        asset = self._assets.get(asset_id)
        return self._asset(asset, locale) if asset is not None else None

    # -- internals -------------------------------------------------------------------------------

    def _fields(
        self, entry: ContentEntry, locale: str, depth: int, path: tuple[str, ...]
    ) -> dict[str, Any]:
        content_type = self._types.get(entry.content_type)
        out: dict[str, Any] = {}
        for field_id, field in self._field_order(entry, content_type):
            if field_id in _WIRING_FIELDS or (field is not None and field.omitted):
                continue
            value = self._value(entry.fields, field_id, field, locale)
            if value is _MISSING:
                continue
            value = self._resolve_value(value, field, locale, depth, path)
            if value is not _MISSING:
                out[field_id] = value
        return out

    @staticmethod
    def _field_order(
        entry: ContentEntry, content_type: ContentTypeInfo | None
    ) -> list[tuple[str, ContentField | None]]:
        """The content type's field order, then any field the content type does not know, by name."""
        known = [(field.id, field) for field in content_type.fields] if content_type else []
        seen = {field_id for field_id, _ in known}
        extra = sorted({name for values in entry.fields.values() for name in values} - seen)
        return known + [(name, None) for name in extra]

    def _value(
        self,
        fields: dict[str, dict[str, Any]],
        field_id: str,
        field: ContentField | None,
        locale: str,
    ) -> Any:
        if field is not None and not field.localized:
            chain: tuple[str, ...] = (self._default_locale,)
        else:
            chain = self._chains.get(locale, (locale,))
        for code in chain:
            values = fields.get(code)
            if values is not None and field_id in values:
                return values[field_id]
        return _MISSING

    def _resolve_value(
        self,
        value: Any,
        field: ContentField | None,
        locale: str,
        depth: int,
        path: tuple[str, ...],
    ) -> Any:
        if (field.type == "RichText") if field is not None else _looks_like_rich_text(value):
            return self.merge_tags.replace(value, lambda target: self._merge_tag(target, locale))
        holds_links = field.holds_links if field is not None else _looks_like_links(value)
        if not holds_links:
            return value
        if isinstance(value, list):
            resolved = (self._resolve_link(item, locale, depth, path) for item in value)
            return [item for item in resolved if item is not _MISSING]
        return self._resolve_link(value, locale, depth, path)

    def _resolve_link(self, link: Any, locale: str, depth: int, path: tuple[str, ...]) -> Any:
        if link_id(link, "Asset") is not None:
            asset = self._assets.get(link["sys"]["id"])
            return self._asset(asset, locale) if asset is not None else _MISSING
        target_id = link_id(link, "Entry")
        target = self._entries.get(target_id) if target_id is not None else None
        if target is None:
            return _MISSING
        stub: dict[str, Any] = {"id": target.id, "content_type": target.content_type}
        if depth <= 0 or target.id in path:
            return stub
        stub["fields"] = self._fields(target, locale, depth - 1, (*path, target.id))
        return stub

    def _merge_tag(self, entry_id: str, locale: str) -> tuple[str, str] | None:
        """(tag id, fallback) of a published merge-tag entry, in the locale; else ``None``."""
        entry = self._entries.get(entry_id)
        if entry is None or entry.content_type != MERGETAG_TYPE:
            return None
        content_type = self._types.get(MERGETAG_TYPE)
        get = content_type.field if content_type is not None else lambda _id: None
        tag_id = self._value(entry.fields, "nt_mergetag_id", get("nt_mergetag_id"), locale)
        if not isinstance(tag_id, str) or not tag_id.strip():
            return None
        fallback = self._value(entry.fields, "nt_fallback", get("nt_fallback"), locale)
        return tag_id.strip(), fallback if isinstance(fallback, str) else ""

    def _asset(self, asset: ContentAsset, locale: str) -> dict[str, Any]:
        title = self._value(asset.fields, "title", None, locale)
        description = self._value(asset.fields, "description", None, locale)
        file = self._value(asset.fields, "file", None, locale)
        file = file if isinstance(file, dict) else {}
        details = file.get("details") if isinstance(file.get("details"), dict) else {}
        image = details.get("image") if isinstance(details.get("image"), dict) else {}
        return {
            "id": asset.id,
            "title": title if title is not _MISSING else None,
            "description": description if description is not _MISSING else None,
            "url": absolute_url(file.get("url")),
            "content_type": file.get("contentType"),
            "width": image.get("width"),
            "height": image.get("height"),
            "size": details.get("size"),
        }


def absolute_url(url: object) -> str | None:
    """Contentful's protocol-relative asset URL (``//images.ctfassets.net/…``) made ``https:``."""
    if not isinstance(url, str) or not url:
        return None
    return "https:" + url if url.startswith("//") else url


def _looks_like_rich_text(value: Any) -> bool:
    """For fields whose content type is unknown: a rich-text document."""
    return isinstance(value, dict) and value.get("nodeType") == "document"


def _looks_like_links(value: Any) -> bool:
    """For fields whose content type is unknown: a link, or a non-empty list of only links."""
    if isinstance(value, list):
        return bool(value) and all(link_id(item) is not None for item in value)
    return link_id(value) is not None
