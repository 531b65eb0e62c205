"""One step from loaded content to a servable snapshot: :func:`compile_snapshot`.

Every source (the bundled demo export, a user's export file, the live Sync API) ends here, so the
demo and production behave alike. Compiling is pure: the same :class:`~content.items.ContentItems`
always give the same snapshot with the same ``version``, which is a hash of the content (not of
Contentful's version counters, which differ between the export and delivery formats) — so a resync
that changed nothing can be recognised and skipped.

The expensive work happens here, off the request path: experiences are compiled and every entry's
fields are resolved and encoded to JSON for every locale.
"""

from __future__ import annotations

import hashlib
import time

import msgspec

from content.delivered_locales import delivered_locales
from content.drafts import draft_issues
from content.experiences import ConditionValidator, compile_experiences
from content.items import ContentItems, ContentLocale
from content.journeys import compile_journeys
from content.mergetags import merge_templates
from content.resolve import FieldResolver
from content.settings import compile_global_holdout, compile_settings
from content.snapshot import ContentEntry, ContentSnapshot
from content.surveys import compile_surveys

__all__ = ["compile_snapshot", "DEFAULT_LINK_DEPTH"]

DEFAULT_LINK_DEPTH = 2
#: Part of the version hash: bump when the compiled output changes for the same content.
_COMPILER_REVISION = 4  # 3: guardrails, updated_at and the global holdout; 4: custom flags, tags
_ENCODER = msgspec.json.Encoder()  # keeps field order: the content type's, as editors see it
_HASH_ENCODER = msgspec.json.Encoder(order="sorted")


def compile_snapshot(
    items: ContentItems,
    link_depth: int = DEFAULT_LINK_DEPTH,
    now: float | None = None,
    *,
    plugin_types: frozenset[str] = frozenset(),
    validate_condition: ConditionValidator | None = None,
) -> ContentSnapshot:
    """Compile loaded content into an immutable :class:`~content.snapshot.ContentSnapshot`.

    ``link_depth`` is how many levels of linked entries are embedded in an entry's fields; ``now``
    stamps ``created_at`` (defaults to the current time). Mis-modelled experiences and journeys do not
    raise: they are left out and listed in ``snapshot.issues``.

    What the app knows is passed in, not looked up: ``plugin_types`` are the experience types its
    plugins add, and ``validate_condition`` checks audience conditions
    (``personalization.decision.audience_validate.validate_condition``); without it rules are not checked.
    """
    locales = _locales(items.locales)
    default_locale = next(
        (locale.code for locale in locales if locale.default), locales[0].code
    )
    locales, locale_issues = delivered_locales(locales, default_locale)  # none hidden from the CDA
    entries = _entries(items.entries)
    items = msgspec.structs.replace(items, locales=locales, entries=tuple(entries.values()))

    # Both content models in one space: native experiences first, then Contentful Personalization's.
    compiled = compile_experiences(
        items, default_locale, plugin_types=plugin_types, validate_condition=validate_condition
    )
    journeys, journey_issues = compile_journeys(items, default_locale)
    goals, settings_issues = compile_settings(items, default_locale)
    global_holdout, holdout_issues = compile_global_holdout(items, default_locale)
    surveys, survey_issues = compile_surveys(
        items, default_locale, {locale.code: locale.fallback_code for locale in locales}, compiled.experiences
    )
    resolver = FieldResolver(items, default_locale=default_locale, link_depth=link_depth)
    fields = {
        entry_id: {
            locale.code: msgspec.Raw(_ENCODER.encode(resolver.entry_fields(entry_id, locale.code)))
            for locale in locales
        }
        for entry_id in entries
    }
    templates = merge_templates(fields, resolver.merge_tags)  # fills fallbacks into ``fields``
    return ContentSnapshot(
        version=_version(items, link_depth),
        created_at=time.time() if now is None else now,
        default_locale=default_locale,
        locales={locale.code: locale.fallback_code for locale in locales},
        entries=entries,
        experiences=compiled.experiences,
        audiences=compiled.audiences,
        issues=(
            *compiled.issues, *journey_issues, *settings_issues, *holdout_issues, *draft_issues(items),
            *locale_issues, *survey_issues,
        ),
        experiences_by_entry=compiled.by_entry,
        fields=fields,
        items=items,
        journeys=journeys,
        merge_templates=templates,
        goals=goals,
        global_holdout=global_holdout,
        link_depth=link_depth,
        flags=compiled.flags,
        surveys=surveys,
    )


def _locales(locales: tuple[ContentLocale, ...]) -> tuple[ContentLocale, ...]:
    """The space's locales, deduplicated; a space that reports none is taken to be en-US only."""
    unique = tuple({locale.code: locale for locale in locales}.values())
    return unique or (ContentLocale(code="en-US", name="English (United States)", default=True),)


def _entries(entries: tuple[ContentEntry, ...]) -> dict[str, ContentEntry]:
    """Entries by id in id order, so the output does not depend on the order a source listed them."""
    by_id = {entry.id: entry for entry in entries}
    return {entry_id: by_id[entry_id] for entry_id in sorted(by_id)}


def _version(items: ContentItems, link_depth: int) -> str:
    """A content hash: 12 hex digits of SHA-256 over the canonical encoding of the input."""
    canonical = msgspec.structs.replace(
        items, assets=tuple(sorted(items.assets, key=lambda a: a.id)), drafts=()  # drafts: not content
    )
    digest = hashlib.sha256()
    digest.update(f"vary-content/{_COMPILER_REVISION}/depth={link_depth}\n".encode())
    digest.update(_HASH_ENCODER.encode(canonical))
    return digest.hexdigest()[:12]
