"""Marketers' ``varyJourney`` entries compiled into the :class:`~personalization.types.Journey` values
journey maps read.

A journey is the path CX and UX people draw on the wall — find → evaluate → decide → buy → engage —
written down so Vary can measure it: each stage says which events count as "the visitor is here"
(their touchpoint and their type). Contentful stores the stages as one JSON Object field, which it
does not validate, so this module does: a journey with a stage Vary cannot read is left out and
reported as a :class:`~content.snapshot.ContentIssue` naming the entry and the fix, and the rest of
the space keeps serving. A half-understood journey would report wrong drop-offs, which is worse
than none.

Stage rules:

- ``key`` (unique within the journey) is required; ``name`` defaults to the key.
- ``touchpoints`` and ``event_types`` are lists of names; an empty or missing list matches any.
  A stage matches an event when **both** match.
- An event type is one of Vary's event types (``page_view``, ``click``, ``conversion``, ``task``,
  ``abandonment``, ``survey``, ``feedback``, ``purchase``, ``identify``), optionally narrowed by a
  detail after a colon: ``conversion:<goal>``, ``task:<task name>`` or ``survey:<metric>``.
- Any other key in a stage object is reported (``touchpoint`` for ``touchpoints`` would otherwise
  silently match every touchpoint).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from content.experiences.base import MAX_KEY_LENGTH, issue, text
from content.items import ContentItems
from content.snapshot import ContentEntry, ContentIssue
from personalization.types import EVENT_TYPES, Journey, JourneyStage

__all__ = ["JOURNEY_TYPE", "DETAILED_EVENT_TYPES", "compile_journeys"]

JOURNEY_TYPE = "varyJourney"
#: Event types a stage may narrow with ``type:detail``, and what the detail is compared with.
DETAILED_EVENT_TYPES: dict[str, str] = {"conversion": "goal", "task": "name", "survey": "metric"}
_STAGE_KEYS = frozenset({"key", "name", "touchpoints", "event_types"})
_EXAMPLE = ('[{"key": "find", "name": "Find", "touchpoints": ["home", "search"], '
            '"event_types": ["page_view"]}, …]')


def compile_journeys(
    items: ContentItems, default_locale: str
) -> tuple[dict[str, Journey], list[ContentIssue]]:
    """Compile every ``varyJourney`` entry: journeys by key, and the issues of those left out.

    Journeys are compiled in publication order, so when two share a key the first published keeps
    it (a copy made with "duplicate" is the newcomer) — as with experiences. Settings are read in
    the default locale: they are not localized.
    """
    journeys: dict[str, Journey] = {}
    issues: list[ContentIssue] = []
    owners: dict[str, ContentEntry] = {}
    candidates = sorted(
        (e for e in items.entries if e.content_type == JOURNEY_TYPE), key=lambda e: (e.created_at, e.id)
    )
    for entry in candidates:
        compiler = _JourneyCompiler(entry, default_locale)
        journey = compiler.compile(owners)
        issues.extend(compiler.issues)
        if journey is not None:
            journeys[journey.key] = journey
    return journeys, issues


class _JourneyCompiler:
    """Compiles one journey entry, collecting every problem so a marketer fixes all at once."""

    def __init__(self, entry: ContentEntry, locale: str) -> None:
        self.entry = entry
        self.get: Callable[[str], Any] = entry.fields.get(locale, {}).get
        self.label = f'"{text(self.get("name")) or entry.id}"'
        self.issues: list[ContentIssue] = []

    def problem(self, problem: str, fix: str) -> None:
        self.issues.append(issue(self.entry, f"{problem} The journey is left out of reports.", fix))

    def compile(self, owners: dict[str, ContentEntry]) -> Journey | None:
        key = self._key(owners)
        stages = self._stages()
        if key is None or stages is None or self.issues:
            return None
        return Journey(id=self.entry.id, key=key, name=text(self.get("name")) or key, stages=stages)

    def _key(self, owners: dict[str, ContentEntry]) -> str | None:
        key = self.get("key")
        if not isinstance(key, str) or not key.strip():
            self.problem(f"Journey {self.label} has no key, so its map cannot be asked for.",
                         "Give it a unique key, e.g. shopping.")
            return None
        key = key.strip()
        if len(key) > MAX_KEY_LENGTH:
            self.problem(f"Journey {self.label} has a key longer than {MAX_KEY_LENGTH} characters.",
                         "Give it a shorter key, e.g. shopping.")
            return None
        owner = owners.setdefault(key, self.entry)
        if owner is not self.entry:
            self.problem(f'Journey {self.label} uses the key "{key}", which journey "{owner.id}" '
                         "already uses.",
                         "Give this journey its own key; keys must be unique.")
            return None
        return key

    def _stages(self) -> tuple[JourneyStage, ...] | None:
        raw = self.get("stages")
        if not isinstance(raw, list) or not raw:
            self.problem(f"Journey {self.label} has no stages (the Stages field must be a JSON list).",
                         f"Enter its stages in order as a JSON list, e.g. {_EXAMPLE}")
            return None
        stages: list[JourneyStage] = []
        seen: set[str] = set()
        for position, item in enumerate(raw, start=1):
            stage = self._stage(position, item)
            if stage is None:
                continue
            if stage.key in seen:
                self.problem(f'Journey {self.label} has two stages with the key "{stage.key}".',
                             "Give every stage its own key.")
                continue
            seen.add(stage.key)
            stages.append(stage)
        return tuple(stages) if len(stages) == len(raw) else None

    def _stage(self, position: int, item: object) -> JourneyStage | None:
        where = f"Journey {self.label}, stage {position}"
        if not isinstance(item, dict):
            self.problem(f"{where} is not a JSON object: {item!r:.80}.",
                         'Write each stage as an object with "key", "name", "touchpoints" and '
                         '"event_types".')
            return None
        ok = True
        unknown = sorted(str(k) for k in item if k not in _STAGE_KEYS)
        if unknown:
            self.problem(f"{where} has settings Vary does not know: {', '.join(unknown)}.",
                         'Use only "key", "name", "touchpoints" and "event_types" (note the plurals).')
            ok = False
        key = item.get("key")
        if not isinstance(key, str) or not key.strip():
            self.problem(f"{where} has no key.", 'Give the stage a short key, e.g. "find".')
            ok = False
        name = item.get("name")
        if name is not None and not isinstance(name, str):
            self.problem(f"{where} has a name that is not text.", 'Write the name as text, e.g. "Find".')
            ok = False
        touchpoints = self._names(where, item, "touchpoints", "touchpoints",
                                  'List the touchpoints as front ends send them, e.g. ["home", '
                                  '"search"], or leave the list empty to match any touchpoint.')
        event_types = self._names(where, item, "event_types", "event types",
                                  'List event types such as ["page_view", "click"], or leave the list '
                                  "empty to match any event.")
        if touchpoints is None or event_types is None:
            ok = False
        if event_types is not None:
            bad = [t for t in event_types if not _known_event_type(t)]
            if bad:
                self.problem(f"{where} has event types Vary does not know: {', '.join(bad)}.",
                             f"Use {', '.join(EVENT_TYPES)}; conversion:<goal>, task:<name> or "
                             "survey:<metric> narrow one down.")
                ok = False
        if not ok:
            return None
        assert isinstance(key, str) and touchpoints is not None and event_types is not None
        key = key.strip()
        return JourneyStage(
            key=key,
            name=text(name) or key,
            touchpoints=tuple(dict.fromkeys(touchpoints)),
            event_types=tuple(dict.fromkeys(event_types)),
        )

    def _names(self, where: str, item: dict[str, Any], field: str, what: str, fix: str) -> list[str] | None:
        """A stage's list of names (see :func:`_names`); reported when it is something else."""
        names = _names(item.get(field))
        if names is None:
            self.problem(f"{where} has {what} that are not a list of names: {item.get(field)!r:.80}.", fix)
        return names


def _names(value: object) -> list[str] | None:
    """A list of non-empty strings, stripped (missing = empty); ``None`` when it is something else."""
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
        return [v.strip() for v in value]
    return None


def _known_event_type(name: str) -> bool:
    kind, colon, detail = name.partition(":")
    if not colon:
        return kind in EVENT_TYPES
    return kind in DETAILED_EVENT_TYPES and bool(detail.strip()) and detail == detail.strip()
