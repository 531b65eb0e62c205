"""What compiling experiences means, whichever content model a space uses.

Vary reads two content models: its own (``varyExperience``/``varyAudience``, :mod:`.native`) and
Contentful Personalization's (``nt_experience``/``nt_audience``, :mod:`.ninetailed`). They differ in
field names and in how a variant is written down, not in what compiling them is:

1. compile every audience entry (by id) — a broken one is reported and left out;
2. find the baseline entries that link experiences (the model's experiences field), reporting links
   that lead nowhere;
3. compile every experience entry in publication order (the first published keeps a shared key),
   each by an :class:`ExperienceCompiler` that collects *every* problem, so a marketer fixes all at
   once, and gives one :class:`~personalization.types.Experience` per baseline it is attached to;
4. list each baseline's experiences in the order its field links them.

:func:`compile_model` runs those steps; a :class:`ContentModel` says how a model names things, so
issues read alike ("… is not linked from any entry …") for both. :func:`merged` puts the two results
together. Audience conditions are checked by a ``validate_condition`` the caller passes (Vary's
GrowthBook evaluator): ``content`` does not reach into the decision code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any, ClassVar

from msgspec import Struct

from content.experiences.ninetailed_flags import FlagExperience
from content.items import ContentItems, link_id
from content.snapshot import ContentEntry, ContentIssue
from personalization.types import Audience, Experience

__all__ = [
    "ConditionValidator",
    "ContentModel",
    "CompiledExperiences",
    "ExperienceCompiler",
    "Space",
    "compile_model",
    "merged",
    "issue",
    "is_number",
    "text",
    "default_weights",
    "edited_at",
    "reserved_key",
    "MAX_KEY_LENGTH",
]

#: The longest key an experience (or journey) may have: ``personalization.types.Id``'s limit.
MAX_KEY_LENGTH = 256
#: Experience keys Vary uses itself: ``_global`` names the global holdout's exposures.
RESERVED_KEYS = frozenset({"_global"})
#: How a later phase of an experience is named in its aggregates (``personalization.types.phase_key``).
_PHASE_SUFFIX = re.compile(r"@p\d+$")

#: Problems in a GrowthBook condition, each readable as text; none when it is fine
#: (``personalization.decision.audience_validate.validate_condition``).
ConditionValidator = Callable[[object], Iterable[object]]
#: One audience entry, the locale settings are read in and the condition check → its audience
#: (``None`` when it cannot run) and the issues found.
AudienceCompiler = Callable[
    [ContentEntry, str, ConditionValidator | None], tuple[Audience | None, list[ContentIssue]]
]


class CompiledExperiences(Struct, frozen=True, kw_only=True):
    """The result of compiling a space's experiences (one model's, or both merged).

    ``experiences`` by key (every experience that compiled, attached or not); ``audiences`` by the
    audience's entry id; ``by_entry``: each baseline entry's compiled experiences in priority order
    (for a Ninetailed experience, the one compiled for that entry's component); ``flags``: the
    Contentful Personalization experiences with custom flags, by experience entry id (each is also
    in ``by_entry`` under its own entry id, the pseudo-entry it is decided under).
    """

    experiences: dict[str, Experience]
    audiences: dict[str, Audience]
    by_entry: dict[str, tuple[Experience, ...]]
    issues: tuple[ContentIssue, ...]
    flags: tuple[FlagExperience, ...] = ()

    @property
    def attachments(self) -> dict[str, list[str]]:
        """Baseline entry id → experience keys, in priority order."""
        return {entry_id: [e.key for e in experiences] for entry_id, experiences in self.by_entry.items()}


class ContentModel(Struct, frozen=True, kw_only=True):
    """How one content model names things — all that differs in the steps both models share."""

    experience_type: str
    audience_type: str
    #: The field of a baseline entry that links its experiences.
    experiences_field: str
    #: How issues name that field, e.g. "Vary experiences".
    field_name: str
    #: How issues name an experience entry of this model, e.g. "a Vary experience".
    experience_name: str
    #: How issues name this model's experience entries in the plural, e.g. "Vary experience entries".
    experience_entries: str
    #: Which field names an entry in an issue, first match wins (else its id).
    label_fields: tuple[str, ...]
    #: Settings are read in the default locale; with this, any locale serves when it has none.
    any_locale: bool = False

    def settings(self, entry: ContentEntry, locale: str) -> Callable[[str], Any]:
        """Reads an entry's settings fields, which are not localized: the default locale's value."""
        values = entry.fields.get(locale)
        if values is None:
            values = next(iter(entry.fields.values()), {}) if self.any_locale else {}
        return values.get

    def label(self, entry: ContentEntry, locale: str) -> str:
        """How an issue names an entry: its name or title in quotes, else its id."""
        get = self.settings(entry, locale)
        for field in self.label_fields:
            value = get(field)
            if isinstance(value, str) and value.strip():
                return f'"{value.strip()}"'
        return f'"{entry.id}"'


class Space(Struct, frozen=True, kw_only=True):
    """What every experience compiler of one space reads: the entries by id, the audiences that
    compiled (by entry id), and the locale settings are read in (the default one)."""

    entries: dict[str, ContentEntry]
    audiences: dict[str, Audience]
    locale: str


class ExperienceCompiler:
    """Compiles one experience entry, collecting every problem so a marketer fixes all at once.

    A model's compiler sets :attr:`model` and implements :meth:`compile`; the problems both models
    can have are here. ``baselines`` are the entries that link the experience.
    """

    model: ClassVar[ContentModel]
    #: Custom flags the experience sets (Contentful Personalization only), once it compiled.
    flag_experience: FlagExperience | None = None

    def __init__(self, entry: ContentEntry, space: Space, baselines: list[str]) -> None:
        self.entry = entry
        self.locale = space.locale
        self.get = self.model.settings(entry, space.locale)
        self.label = self.model.label(entry, space.locale)
        self.entries = space.entries
        self.audiences = space.audiences
        self.baselines = baselines
        self.issues: list[ContentIssue] = []
        self._off = False

    def compile(self) -> tuple[Experience, dict[str, Experience]] | None:
        """The experience (by its key) and what each attached baseline runs; ``None`` when off."""
        raise NotImplementedError

    def problem(self, problem: str, fix: str, *, switches_off: bool = True) -> None:
        if switches_off:
            problem += " It is switched off."
            self._off = True
        self.issues.append(issue(self.entry, problem, fix))

    def check_linked(self) -> None:
        """An experience no entry links runs nowhere: said, but not an error."""
        if not self.baselines:
            self.problem(f"Experience {self.label} is not linked from any entry, so no visitor sees it.",
                         f"Add it to the {self.model.field_name} field of the entry it should change.",
                         switches_off=False)

    def linked_entry(self, link: object) -> tuple[ContentEntry | None, str]:
        """The published entry a link leads to (``None`` when it leads nowhere), and how an issue
        shows the link: the target's id in quotes, else the link as written."""
        target_id = link_id(link, "Entry")
        target = self.entries.get(target_id) if target_id else None
        return target, (f'"{target_id}"' if target_id else repr(link))

    def compiled_audience(self, target: ContentEntry, label: str) -> Audience | None:
        """The compiled audience of a linked audience entry; reports one that did not compile."""
        audience = self.audiences.get(target.id)
        if audience is None:
            self.problem(f"Experience {self.label} uses audience {label}, which has a problem of its own.",
                         f'Fix the audience "{target.id}" first (see its issue).')
        return audience


def compile_model(
    items: ContentItems,
    locale: str,
    model: ContentModel,
    compile_audience: AudienceCompiler,
    experience_compiler: Callable[[ContentEntry, Space, list[str]], ExperienceCompiler],
    validate_condition: ConditionValidator | None = None,
) -> CompiledExperiences:
    """Compile one model's audiences and experiences (steps 1–4 of the module doc).

    ``compile_audience(entry, locale, validate_condition)`` compiles one audience entry;
    ``experience_compiler(entry, space, baselines)`` makes the compiler of one experience entry; they
    are made in publication order, so one can keep the keys already taken.
    """
    entries = {entry.id: entry for entry in items.entries}
    issues: list[ContentIssue] = []

    audiences: dict[str, Audience] = {}
    for entry in _of_type(entries, model.audience_type, key=lambda e: e.id):
        audience, problems = compile_audience(entry, locale, validate_condition)
        issues.extend(problems)
        if audience is not None:
            audiences[entry.id] = audience

    linked = _linked(entries, locale, model, issues)
    attached: dict[str, list[str]] = {}
    for baseline_id, experience_ids in linked.items():
        for experience_id in experience_ids:
            attached.setdefault(experience_id, []).append(baseline_id)

    space = Space(entries=entries, audiences=audiences, locale=locale)
    experiences: dict[str, Experience] = {}
    per_entry: dict[tuple[str, str], Experience] = {}
    flags: list[FlagExperience] = []
    # The experience published first keeps a shared key: a copy made with "duplicate" is the newcomer.
    for entry in _of_type(entries, model.experience_type, key=lambda e: (e.created_at, e.id)):
        compiler = experience_compiler(entry, space, attached.get(entry.id, []))
        compiled = compiler.compile()
        issues.extend(compiler.issues)
        if compiled is None:
            continue
        first, by_baseline = compiled
        experiences[first.key] = first
        for baseline_id, experience in by_baseline.items():
            per_entry[(baseline_id, entry.id)] = experience
        if compiler.flag_experience is not None:
            flags.append(compiler.flag_experience)

    by_entry: dict[str, tuple[Experience, ...]] = {}
    for baseline_id, experience_ids in linked.items():
        chosen = tuple(per_entry[(baseline_id, i)] for i in experience_ids if (baseline_id, i) in per_entry)
        if chosen:
            by_entry[baseline_id] = chosen
    for flag_experience in flags:  # decided under its own entry id (no entry links it)
        by_entry[flag_experience.entry_id] = (per_entry[(flag_experience.entry_id, flag_experience.entry_id)],)
    return CompiledExperiences(
        experiences=experiences,
        audiences=audiences,
        by_entry=by_entry,
        issues=tuple(issues),
        flags=tuple(sorted(flags, key=lambda f: f.entry_id)),
    )


def merged(first: CompiledExperiences, then: CompiledExperiences) -> CompiledExperiences:
    """Both results in one: an entry linked from both models runs ``first``'s experiences first.

    ``then`` must have been compiled with ``first``'s experience keys reserved, so keys stay unique.
    """
    if not (then.experiences or then.audiences or then.issues):
        return first
    by_entry = dict(first.by_entry)
    for entry_id, experiences in then.by_entry.items():
        by_entry[entry_id] = (*by_entry.get(entry_id, ()), *experiences)
    return CompiledExperiences(
        experiences={**first.experiences, **then.experiences},
        audiences={**first.audiences, **then.audiences},
        by_entry=by_entry,
        issues=(*first.issues, *then.issues),
        flags=tuple(sorted((*first.flags, *then.flags), key=lambda f: f.entry_id)),
    )


def _of_type(
    entries: dict[str, ContentEntry], content_type: str, key: Callable[[ContentEntry], Any]
) -> list[ContentEntry]:
    return sorted((e for e in entries.values() if e.content_type == content_type), key=key)


def _linked(
    entries: dict[str, ContentEntry], locale: str, model: ContentModel, issues: list[ContentIssue]
) -> dict[str, list[str]]:
    """Baseline id → the experience ids it links, in order; reports links that lead nowhere."""
    linked: dict[str, list[str]] = {}
    for entry in sorted(entries.values(), key=lambda e: e.id):
        links = entry.fields.get(locale, {}).get(model.experiences_field)
        if not isinstance(links, list) or not links:
            continue
        label = model.label(entry, locale)
        ids: list[str] = []
        for target_id in dict.fromkeys(t for t in (link_id(link, "Entry") for link in links) if t):
            target = entries.get(target_id)
            if target is None:
                issues.append(issue(
                    entry,
                    f'Entry {label} links experience "{target_id}", which is not published or no longer '
                    "exists; it is ignored.",
                    f"Publish that experience, or remove it from the entry's {model.field_name}."))
            elif target.content_type != model.experience_type:
                issues.append(issue(
                    entry,
                    f'Entry {label} links "{target_id}" ({target.content_type}) in its {model.field_name}, '
                    f"but that is not {model.experience_name}; it is ignored.",
                    f"Remove it; only {model.experience_entries} belong in that field."))
            else:
                ids.append(target_id)
        if ids:
            linked[entry.id] = ids
    return linked


def issue(entry: ContentEntry, problem: str, fix: str) -> ContentIssue:
    return ContentIssue(entry_id=entry.id, content_type=entry.content_type, problem=problem, fix=fix)


def is_number(value: object) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def default_weights(kind: str, arms: int) -> tuple[float, ...]:
    """The weights of an experience that gives none: a personalization puts everything on its
    variants (evenly), any other type splits evenly over all arms, the baseline (arm 0) included."""
    if kind == "personalization" and arms > 1:
        return (0.0, *([1.0 / (arms - 1)] * (arms - 1)))
    return tuple([1.0 / arms] * arms)


def text(value: object) -> str | None:
    """A non-blank string, stripped; ``None`` for anything else."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def reserved_key(key: str) -> str | None:
    """Why an experience may not have this key (``None``: it may): Vary's own names, and names that
    read as a later phase of another experience (``<key>@p<n>``), would mix their results."""
    if key in RESERVED_KEYS:
        return f'"{key}" is reserved: Vary logs the global holdout under it'
    if _PHASE_SUFFIX.search(key):
        return f'"{key}" ends like a phase of another experience (@p<number>)'
    return None


def edited_at(*entries: ContentEntry | None) -> float | None:
    """When the latest of these entries was last published (epoch s); ``None`` when none says.

    An experience's assignment depends on its own entry and its audience's, so a phase starts at the
    later of the two edits.
    """
    times = []
    for entry in entries:
        if entry is None or not entry.updated_at:
            continue
        try:
            parsed = datetime.fromisoformat(entry.updated_at.strip())
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        times.append(parsed.timestamp())
    return max(times, default=None)
