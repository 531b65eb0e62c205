"""Rich-text merge tags (Contentful Personalization / Ninetailed ``nt_mergetag``), filled per visitor.

A merge tag is an ``nt_mergetag`` entry embedded inline in a rich-text field: ``nt_mergetag_id`` names
a path in the visitor's profile (``traits.firstname``, ``location.city``) and ``nt_fallback`` is the
text shown when the visitor has no value there. Vary fills them on the server, so a front end renders
plain rich text:

- **Compile time** (:class:`~content.resolve.FieldResolver`): every ``embedded-entry-inline`` node
  whose target is a published ``nt_mergetag`` becomes a ``text`` node
  ``{"nodeType": "text", "value": …, "marks": [], "data": {"nt_mergetag_id": "traits.firstname"}}``
  whose value is, for now, a sentinel string naming the tag (:class:`MergeTagRegistry`).
- After encoding (:func:`merge_templates`), an entry whose JSON holds sentinels is split into a
  :class:`MergeTemplate` — the JSON bytes around each tag — and its ready JSON gets the fallbacks
  filled in (what a caller without visitor values is served).
- **Serving** (:meth:`~content.snapshot.ContentSnapshot.fields` with ``values``): the template's parts
  are joined with the visitor's values, JSON-escaped. No decode, no re-encode; entries without merge
  tags keep the pre-encoded fast path.

Paths are looked up as Ninetailed's ``MergeTag`` component does: the id is split at ``_`` and every
way of reading the underscores as dots is tried, most literal first (``traits_first_name`` →
``traits_first_name``, ``traits.first_name``, ``traits.first.name``), so both the dotted ids the
issue describes and Ninetailed's underscore ids work. An empty value counts as missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import Struct

__all__ = [
    "MERGETAG_TYPE",
    "MergeTag",
    "MergeTagRegistry",
    "MergeTemplate",
    "merge_templates",
    "selectors_for",
]

MERGETAG_TYPE = "nt_mergetag"
_SENTINEL = "\x00vary-mergetag:{}\x00"
# How the sentinel looks once msgspec has JSON-encoded it (NUL is written \u0000).
_ENCODED_SENTINEL = re.compile(rb"\\u0000vary-mergetag:(\d+)\\u0000")
_ENCODED_MARK = b"\\u0000vary-mergetag:"
_STRING = msgspec.json.Encoder()


def selectors_for(tag_id: str) -> tuple[str, ...]:
    """Profile paths to try for a merge tag id, in Ninetailed's order (see module docstring)."""
    parts = tag_id.strip().split("_")
    selectors: list[str] = []
    for i in range(len(parts)):
        dotted = ".".join(parts[:i])
        rest = "_".join(parts[i:])
        selector = ".".join(p for p in (dotted, rest) if p)
        if selector and selector not in selectors:
            selectors.append(selector)
    return tuple(selectors)


class MergeTag(Struct, frozen=True, kw_only=True):
    """One merge tag as compiled: its id, the paths tried, and the fallback text."""

    id: str
    fallback: str = ""
    selectors: tuple[str, ...] = ()

    def text(self, values: Mapping[str, str]) -> str:
        """The visitor's value at the first selector that has one, else the fallback."""
        for selector in self.selectors:
            value = values.get(selector)
            if value:
                return value
        return self.fallback


class MergeTagRegistry:
    """The merge tags met while resolving one space; a tag's sentinel is its index here."""

    def __init__(self) -> None:
        self.tags: list[MergeTag] = []
        self._index: dict[tuple[str, str], int] = {}

    def __bool__(self) -> bool:
        return bool(self.tags)

    def sentinel(self, tag_id: str, fallback: str) -> str:
        key = (tag_id, fallback)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.tags)
            self.tags.append(MergeTag(id=tag_id, fallback=fallback, selectors=selectors_for(tag_id)))
        return _SENTINEL.format(index)

    def replace(self, document: Any, lookup: Any) -> Any:
        """``document`` with merge-tag nodes turned into sentinel text nodes (the same object if none).

        ``lookup(entry_id)`` gives ``(tag id, fallback)`` for a published ``nt_mergetag`` entry, else
        ``None`` (the node is then left as it is).
        """
        if not isinstance(document, dict):
            return document
        content = document.get("content")
        if not isinstance(content, list):
            return document
        changed = False
        new_content: list[Any] = []
        for node in content:
            new_node = self._node(node, lookup)
            changed = changed or new_node is not node
            new_content.append(new_node)
        if not changed:
            return document
        return {**document, "content": new_content}

    def _node(self, node: Any, lookup: Any) -> Any:
        if isinstance(node, dict) and node.get("nodeType") == "embedded-entry-inline":
            data = node.get("data")
            target = data.get("target") if isinstance(data, dict) else None
            sys = target.get("sys") if isinstance(target, dict) else None
            target_id = sys.get("id") if isinstance(sys, dict) else None
            found = lookup(target_id) if isinstance(target_id, str) else None
            if found is not None:
                tag_id, fallback = found
                return {
                    "nodeType": "text",
                    "value": self.sentinel(tag_id, fallback),
                    "marks": [],
                    "data": {"nt_mergetag_id": tag_id},
                }
            return node
        return self.replace(node, lookup)


class MergeTemplate(Struct, frozen=True):
    """An entry's JSON split around its merge tags: ``parts[0] tag[0] parts[1] … parts[-1]``."""

    parts: tuple[bytes, ...]
    tags: tuple[MergeTag, ...]

    def render(self, values: Mapping[str, str]) -> bytes:
        """The JSON with every tag filled from ``values`` (profile path → text)."""
        out = [self.parts[0]]
        for tag, part in zip(self.tags, self.parts[1:]):
            out.append(_STRING.encode(tag.text(values))[1:-1])
            out.append(part)
        return b"".join(out)


def _template(raw: bytes, registry: MergeTagRegistry) -> MergeTemplate | None:
    if _ENCODED_MARK not in raw:
        return None
    parts: list[bytes] = []
    tags: list[MergeTag] = []
    start = 0
    for match in _ENCODED_SENTINEL.finditer(raw):
        parts.append(raw[start : match.start()])
        tags.append(registry.tags[int(match.group(1))])
        start = match.end()
    if not tags:
        return None
    parts.append(raw[start:])
    return MergeTemplate(tuple(parts), tuple(tags))


def merge_templates(
    fields: dict[str, dict[str, msgspec.Raw]], registry: MergeTagRegistry
) -> dict[str, dict[str, MergeTemplate]]:
    """Templates of the entries whose fields hold merge tags; their ``fields`` get the fallbacks.

    ``fields`` (entry id → locale → JSON) is updated in place: a caller who passes no visitor values
    is served the fallbacks.
    """
    templates: dict[str, dict[str, MergeTemplate]] = {}
    if not registry:
        return templates
    empty: Mapping[str, str] = {}
    for entry_id, by_locale in fields.items():
        for locale, raw in by_locale.items():
            template = _template(bytes(raw), registry)
            if template is not None:
                templates.setdefault(entry_id, {})[locale] = template
                by_locale[locale] = msgspec.Raw(template.render(empty))
    return templates
