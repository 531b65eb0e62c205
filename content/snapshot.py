"""The compiled, immutable view of a space that every request reads.

A :class:`ContentSnapshot` is built once per sync by :func:`content.compile.compile_snapshot` and then
only read, from many requests at once, so it must be cheap to query and impossible to change: the
service swaps a whole new snapshot in atomically, and a request never sees half a sync. Everything a
request needs is precomputed at compile time — each entry's fields per locale are stored as the final
JSON bytes (links resolved, fallbacks applied), so serving an entry is two dict lookups.

The snapshot knows nothing about visitors; choosing a variant is ``personalization``'s job. It only
answers "which experiences run on this entry" and "what does this entry say in this locale".
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import Struct

from content.locales import LocaleMatcher
from personalization.types import Audience, Experience, Journey, SurveyDefinition

if TYPE_CHECKING:
    from content.items import ContentItems
    from content.links import LinkIndex
    from content.mergetags import MergeTemplate

__all__ = ["ContentEntry", "ContentIssue", "ContentSnapshot"]


class ContentEntry(Struct, frozen=True, kw_only=True):
    """One published entry as Contentful stores it: fields by locale, links unresolved.

    ``fields`` is ``{locale: {field id: raw value}}`` — only the locales that hold a value for a field
    appear (Contentful stores non-localized fields under the default locale only). ``created_at`` is
    when the entry was first published and ``updated_at`` when its live version was published (ISO
    8601, as Contentful's delivery API reports them). ``tags`` are the ids of its ``metadata.tags``
    (Contentful's content tags), ``concepts`` of its ``metadata.concepts`` (taxonomy), as given.
    """

    id: str
    content_type: str
    fields: dict[str, dict[str, Any]]
    updated_at: str
    created_at: str = ""
    tags: tuple[str, ...] = ()
    concepts: tuple[str, ...] = ()


class ContentIssue(Struct, frozen=True, kw_only=True):
    """Something mis-modelled in the space, said so a marketer can fix it in Contentful.

    ``entry_id`` is the entry to open; ``problem`` says what is wrong and what Vary does about it
    (usually: the experience is switched off while the rest of the space keeps serving); ``fix`` says
    what to change.
    """

    entry_id: str
    content_type: str
    problem: str
    fix: str


class ContentSnapshot:
    """An immutable, versioned view of one space: entries by id and locale, compiled experiences.

    ``version`` is a content hash: two snapshots of the same content have the same version, whatever
    source they came from. ``entries``, ``experiences`` (by experience key), ``audiences`` (by the
    audience's entry id), ``journeys`` (journey maps' definitions, by journey key) and ``locales``
    (code → fallback code) are read-only mappings. ``items`` is the input the snapshot was compiled
    from (a msgspec Struct: persist it to rebuild the snapshot later).
    """

    __slots__ = (
        "version",
        "created_at",
        "default_locale",
        "locales",
        "entries",
        "experiences",
        "audiences",
        "journeys",
        "issues",
        "items",
        "goals",
        "global_holdout",
        "links",
        "flags",
        "surveys",
        "_experiences_by_entry",
        "_fields",
        "_merge_templates",
        "_locale_matcher",
    )

    version: str
    created_at: float
    default_locale: str
    locales: Mapping[str, str | None]
    entries: Mapping[str, ContentEntry]
    experiences: Mapping[str, Experience]
    audiences: Mapping[str, Audience]
    journeys: Mapping[str, Journey]
    issues: tuple[ContentIssue, ...]
    items: ContentItems | None
    #: The space's declared conversion goals (its ``varySettings`` entry); ``None``: none declared.
    goals: tuple[str, ...] | None
    #: The space's global holdout share (its ``varySettings`` entry); ``None``: not set in content.
    global_holdout: float | None
    #: Rich-text / Object-field links and the CDA shape of every entry and asset (content.links).
    links: LinkIndex
    #: Contentful Personalization experiences with custom flags, by entry id
    #: (``content.experiences.ninetailed_flags.FlagExperience``); each is decided under its entry id.
    flags: tuple[Any, ...]
    #: The space's ``varySurvey`` prompts that compiled, by key (:mod:`content.surveys`).
    surveys: Mapping[str, SurveyDefinition]

    def __init__(
        self,
        *,
        version: str,
        created_at: float,
        default_locale: str,
        locales: dict[str, str | None],
        entries: dict[str, ContentEntry],
        experiences: dict[str, Experience],
        audiences: dict[str, Audience],
        issues: tuple[ContentIssue, ...],
        experiences_by_entry: dict[str, tuple[Experience, ...]],
        fields: dict[str, dict[str, msgspec.Raw]],
        items: ContentItems | None = None,
        journeys: dict[str, Journey] | None = None,
        merge_templates: dict[str, dict[str, MergeTemplate]] | None = None,
        goals: tuple[str, ...] | None = None,
        global_holdout: float | None = None,
        link_depth: int = 2,
        flags: tuple[Any, ...] = (),
        surveys: dict[str, SurveyDefinition] | None = None,
    ) -> None:
        if default_locale not in locales:
            raise ValueError(f"default locale {default_locale!r} is not one of {sorted(locales)}")
        setter = object.__setattr__
        setter(self, "version", version)
        setter(self, "created_at", created_at)
        setter(self, "default_locale", default_locale)
        setter(self, "locales", MappingProxyType(dict(locales)))
        setter(self, "entries", MappingProxyType(dict(entries)))
        setter(self, "experiences", MappingProxyType(dict(experiences)))
        setter(self, "audiences", MappingProxyType(dict(audiences)))
        setter(self, "journeys", MappingProxyType(dict(journeys or {})))
        setter(self, "issues", tuple(issues))
        setter(self, "items", items)
        setter(self, "goals", goals)
        setter(self, "global_holdout", global_holdout)
        setter(self, "flags", tuple(flags))
        setter(self, "surveys", MappingProxyType(dict(surveys or {})))
        # Imported here: content.links reads ContentEntry from this module.
        from content.links import LinkIndex

        links = LinkIndex(items, default_locale=default_locale, link_depth=link_depth, compact_fields=fields)
        setter(self, "links", links)
        setter(self, "_experiences_by_entry", dict(experiences_by_entry))
        setter(self, "_fields", {entry_id: dict(by_locale) for entry_id, by_locale in fields.items()})
        setter(self, "_merge_templates", dict(merge_templates or {}))
        setter(self, "_locale_matcher", LocaleMatcher(locales, default_locale))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ContentSnapshot is immutable (tried to set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ContentSnapshot is immutable (tried to delete {name!r})")

    def __repr__(self) -> str:
        return (
            f"<ContentSnapshot version={self.version} entries={len(self.entries)} "
            f"experiences={len(self.experiences)} issues={len(self.issues)}>"
        )

    # -- lookups on the request path -------------------------------------------------------------

    def has_entry(self, entry_id: str) -> bool:
        """Whether a published entry with this id exists."""
        return entry_id in self.entries

    def content_type_of(self, entry_id: str) -> str | None:
        """The entry's content type id, or ``None`` for an unknown entry."""
        entry = self.entries.get(entry_id)
        return entry.content_type if entry is not None else None

    def experiences_for(self, entry_id: str) -> tuple[Experience, ...]:
        """The valid experiences attached to an entry, in its ``varyExperiences`` order (= priority)."""
        return self._experiences_by_entry.get(entry_id, ())

    def baselines(self) -> dict[str, list[str]]:
        """Experience key → the ids of the entries it is attached to (its baselines), sorted; every
        experience is listed, one attached to no entry with an empty list."""
        baselines: dict[str, list[str]] = {key: [] for key in self.experiences}
        for entry_id in self.entries:
            for experience in self.experiences_for(entry_id):
                baselines.setdefault(experience.key, []).append(entry_id)
        return {key: sorted(entry_ids) for key, entry_ids in baselines.items()}

    def fields(
        self, entry_id: str, locale: str | None = None, values: Mapping[str, str] | None = None
    ) -> msgspec.Raw:
        """The entry's fields in a locale as ready JSON: fallbacks applied, links resolved.

        ``locale`` goes through :meth:`locale_for`, so an unknown locale gets the default locale.
        ``values`` (profile path → text, see ``personalization.decision.context.merge_values``) fill the
        entry's rich-text merge tags; without them a merge tag shows its fallback. Only entries with
        merge tags pay for ``values``. Raises ``KeyError`` for an unknown entry (check
        :meth:`has_entry` first).
        """
        by_locale = self._fields[entry_id]
        if values is not None and entry_id in self._merge_templates:
            code = locale if locale in by_locale else self.locale_for(locale)
            template = self._merge_templates[entry_id].get(code)
            if template is not None:
                return msgspec.Raw(template.render(values))
        if locale is not None:
            raw = by_locale.get(locale)
            if raw is not None:
                return raw
        return by_locale[self.locale_for(locale)]

    @property
    def has_merge_tags(self) -> bool:
        """Whether any entry's fields hold a merge tag (else visitor values are never needed)."""
        return bool(self._merge_templates)

    def locale_for(self, requested: str | None) -> str:
        """The space's locale that serves a requested BCP 47 tag (:mod:`content.locales`).

        Exact match (case-insensitive, ``_`` read as ``-``), else the longest prefix that is a space
        locale, else a locale of the same language and script (``de`` or ``de-AT`` → ``de-DE``; never
        ``zh-CN`` → ``zh-Hant-TW``), else the default locale.
        """
        return self._locale_matcher.match(requested)
