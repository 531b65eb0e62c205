"""Marketers' ``varySurvey`` entries compiled into :class:`~personalization.types.SurveyDefinition`.

A survey is configured in the CMS like everything else a marketer changes (issue 24): its metric,
its words per locale, when it is due (the trigger), to what share of people (sampling) and how
rarely (the cap across every survey and channel). Contentful checks single fields; this module
checks what it cannot, the same way experiences are checked: a survey Vary cannot run is left out
and reported as a :class:`~content.snapshot.ContentIssue` naming the entry and the fix, and the rest
of the space keeps serving. A half-understood survey would ask the wrong people the wrong question.

Rules:

- ``key`` unique (the first published keeps it, as with experiences); ``metric`` one of
  :data:`~personalization.types.SURVEY_METRICS`.
- ``trigger`` is ``task_success:<task>``, ``task_failure:<task>``, ``page:<path or screen>`` (a
  trailing ``*`` matches a prefix), ``visits:<n>`` (n ≥ 1), ``purchase`` or ``exit_intent``.
- ``question`` is required in the default locale. Every other locale is resolved through the
  space's fallback chain at compile time; a locale whose chain ends without a question (no
  fallback) is reported and served the default locale's words. A ``sus`` survey needs its ten
  statements (``susItems``) the same way; ``problemTags`` belong to ``feedback`` prompts only.
- ``samplingRate`` is a share in [0, 1] (default 1: everyone whose trigger fires);
  ``capDays`` whole days in [0, 365] (default 30); ``maxPerPerson`` ≥ 1 or empty.
- ``experience`` links a ``varyExperience``; a link to anything else (or to nothing published)
  leaves the survey out: its answers could not be tied to a variant. An experience switched off by
  its own issues keeps its surveys (that issue is reported once, on the experience).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from content.experiences.base import MAX_KEY_LENGTH, is_number, issue, text
from content.experiences.native import EXPERIENCE_TYPE
from content.items import ContentItems, link_id
from content.snapshot import ContentEntry, ContentIssue
from personalization.types import (
    SURVEY_METRICS,
    Experience,
    SurveyDefinition,
    SurveyText,
    SurveyTrigger,
)

__all__ = ["DEFAULT_CAP_DAYS", "SURVEY_TYPE", "SUS_ITEMS", "compile_surveys", "parse_trigger"]

SURVEY_TYPE = "varySurvey"
DEFAULT_CAP_DAYS = 30
MAX_CAP_DAYS = 365
#: SUS has exactly ten statements (Brooke 1996), odd ones positive, even ones negative.
SUS_ITEMS = 10
_TRIGGER_FIX = ("Write the trigger as task_success:<task>, task_failure:<task>, page:<path>, visits:<n>, "
                "purchase or exit_intent, e.g. task_success:checkout.")


def parse_trigger(raw: object) -> SurveyTrigger | None:
    """A trigger as content writes it (see the module doc); ``None`` when it is not one."""
    if not isinstance(raw, str):
        return None
    value = raw.strip()
    if value in ("purchase", "exit_intent"):
        return SurveyTrigger(kind=value)  # type: ignore[arg-type]
    kind, colon, detail = value.partition(":")
    detail = detail.strip()
    if not colon or not detail or len(detail) > 256:
        return None
    if kind in ("task_success", "task_failure") and len(detail) <= 128:  # a task event's name length
        return SurveyTrigger(kind=kind, detail=detail)  # type: ignore[arg-type]
    if kind == "page":
        return SurveyTrigger(kind="page", detail=detail)
    if kind == "visits" and detail.isdigit() and 1 <= int(detail) <= 10_000:
        return SurveyTrigger(kind="visits", detail=str(int(detail)))
    return None


def compile_surveys(
    items: ContentItems,
    default_locale: str,
    locales: Mapping[str, str | None],
    experiences: Mapping[str, Experience],
) -> tuple[dict[str, SurveyDefinition], list[ContentIssue]]:
    """Compile every ``varySurvey`` entry: surveys by key, and the issues found.

    ``locales`` maps each space locale to its fallback; ``experiences`` are the compiled experiences
    by key (a survey's link is checked against them). Entries are compiled in publication order.
    """
    by_entry_id = _experience_keys(items, default_locale, experiences)
    surveys: dict[str, SurveyDefinition] = {}
    issues: list[ContentIssue] = []
    owners: dict[str, ContentEntry] = {}
    candidates = sorted(
        (e for e in items.entries if e.content_type == SURVEY_TYPE), key=lambda e: (e.created_at, e.id)
    )
    for entry in candidates:
        compiler = _SurveyCompiler(entry, default_locale, locales)
        survey = compiler.compile(owners, by_entry_id)
        issues.extend(compiler.issues)
        if survey is not None:
            surveys[survey.key] = survey
    return surveys, issues


def _experience_keys(
    items: ContentItems, default_locale: str, experiences: Mapping[str, Experience]
) -> dict[str, str]:
    """Experience entry id → key, for every published ``varyExperience`` entry with a key, running or
    not: an experience switched off by its own issue is reported there, and its survey keeps its
    link (people served a variant before still answer for it)."""
    keys = {experience.id: experience.key for experience in experiences.values()}
    for entry in items.entries:
        if entry.content_type == EXPERIENCE_TYPE and entry.id not in keys:
            key = text(entry.fields.get(default_locale, {}).get("key"))
            if key is not None:
                keys[entry.id] = key
    return keys


class _SurveyCompiler:
    """Compiles one survey entry, collecting every problem so a marketer fixes all at once."""

    def __init__(self, entry: ContentEntry, default_locale: str, locales: Mapping[str, str | None]) -> None:
        self.entry = entry
        self.default_locale = default_locale
        self.locales = locales
        self.get: Callable[[str], Any] = entry.fields.get(default_locale, {}).get
        self.label = f'"{text(self.get("name")) or entry.id}"'
        self.issues: list[ContentIssue] = []
        self.fatal = False

    def problem(self, problem: str, fix: str) -> None:
        """A problem that switches the survey off."""
        self.fatal = True
        self.issues.append(issue(self.entry, f"{problem} The survey is not shown.", fix))

    def warning(self, problem: str, fix: str) -> None:
        """A problem the survey runs with (said so in ``problem``)."""
        self.issues.append(issue(self.entry, problem, fix))

    def compile(self, owners: dict[str, ContentEntry], experiences: Mapping[str, str]) -> SurveyDefinition | None:
        key = self._key(owners)
        metric = self._metric()
        trigger = parse_trigger(self.get("trigger"))
        if trigger is None:
            self.problem(f"Survey {self.label} has the trigger {self.get('trigger')!r:.80}, which Vary cannot read.",
                         _TRIGGER_FIX)
        sampling = self._share("samplingRate", 1.0)
        cap = self._whole("capDays", DEFAULT_CAP_DAYS, 0, MAX_CAP_DAYS, "Days between surveys")
        most = self._whole("maxPerPerson", None, 1, 100, "Most times per person")
        experience = self._experience(experiences)
        texts = self._texts(metric)
        tags = self._tags(metric)
        if self.fatal or key is None or metric is None or trigger is None or texts is None:
            return None
        return SurveyDefinition(
            id=self.entry.id, key=key, name=text(self.get("name")) or key, metric=metric,  # type: ignore[arg-type]
            trigger=trigger, texts=texts, problem_tags=tags, sampling_rate=sampling,
            cap_days=float(cap if cap is not None else DEFAULT_CAP_DAYS), max_per_person=most,
            experience=experience,
        )

    def _key(self, owners: dict[str, ContentEntry]) -> str | None:
        key = self.get("key")
        if not isinstance(key, str) or not key.strip() or len(key.strip()) > MAX_KEY_LENGTH:
            self.problem(f"Survey {self.label} has no usable key, so its answers cannot be reported.",
                         "Give it a unique short key, e.g. checkout-csat.")
            return None
        key = key.strip()
        owner = owners.setdefault(key, self.entry)
        if owner is not self.entry:
            self.problem(f'Survey {self.label} uses the key "{key}", which survey "{owner.id}" already uses.',
                         "Give this survey its own key; keys must be unique.")
            return None
        return key

    def _metric(self) -> str | None:
        metric = self.get("metric")
        if metric not in SURVEY_METRICS:
            self.problem(f"Survey {self.label} has the metric {metric!r:.40}.",
                         f"Choose one of {', '.join(SURVEY_METRICS)}.")
            return None
        return str(metric)

    def _share(self, field: str, default: float) -> float:
        raw = self.get(field)
        if raw is None:
            return default
        if not is_number(raw) or not 0 <= raw <= 1:
            self.problem(f"Survey {self.label} has the sampling rate {raw!r:.40}; it is the share of people "
                         "asked, between 0 and 1.", "Enter a share such as 0.2 for one person in five.")
            return default
        return float(raw)

    def _whole(self, field: str, default: int | None, low: int, high: int, name: str) -> int | None:
        raw = self.get(field)
        if raw is None:
            return default
        if not is_number(raw) or raw != int(raw) or not low <= raw <= high:
            self.problem(f'Survey {self.label} has "{name}" {raw!r:.40}; expected a whole number from '
                         f"{low} to {high}.", f"Enter a whole number from {low} to {high}, or clear it.")
            return default
        return int(raw)

    def _experience(self, experiences: Mapping[str, str]) -> str | None:
        raw = self.get("experience")
        if raw is None:
            return None
        target = link_id(raw)
        key = experiences.get(target) if target else None
        if key is None:
            self.problem(f"Survey {self.label} is attached to {target!r}, which is not a published Vary "
                         "experience with a key.", "Link a published Vary experience, or remove the link.")
        return key

    def _localized(self, field: str, locale: str) -> Any:
        """A localized field's value in ``locale``, through the fallback chain; ``None`` if none has it."""
        seen: set[str] = set()
        code: str | None = locale
        while code is not None and code not in seen:
            seen.add(code)
            value = self.entry.fields.get(code, {}).get(field)
            if value not in (None, "", []):
                return value
            code = self.locales.get(code)
        return None

    def _texts(self, metric: str | None) -> dict[str, SurveyText] | None:
        reported = len(self.issues)
        default = self._text(self.default_locale, metric)
        if default is None and len(self.issues) > reported:  # _text said what is wrong
            return None
        if default is None:
            what = "ten SUS statements" if metric == "sus" and text(self.get("question")) else "question"
            self.problem(f"Survey {self.label} has no {what} in the default locale {self.default_locale}.",
                         f"Write the {what} in {self.default_locale}.")
            return None
        texts = {self.default_locale: default}
        for locale in self.locales:
            if locale == self.default_locale:
                continue
            found = self._text(locale, metric)
            if found is None:
                self.warning(f"Survey {self.label} has no question (or SUS statements) in {locale}, and "
                             f"{locale} falls back to no locale that has: people reading {locale} are asked "
                             f"in {self.default_locale}.",
                             f"Translate the survey into {locale}, or give {locale} a fallback locale.")
            texts[locale] = found or default
        return texts

    def _text(self, locale: str, metric: str | None) -> SurveyText | None:
        question = self._localized("question", locale)
        if not isinstance(question, str) or not question.strip():
            return None
        items: tuple[str, ...] = ()
        if metric == "sus":
            raw = self._localized("susItems", locale)
            if not isinstance(raw, list) or len(raw) != SUS_ITEMS or not all(isinstance(i, str) and i.strip() for i in raw):
                if locale == self.default_locale and raw is not None:
                    self.problem(f"Survey {self.label} has {len(raw) if isinstance(raw, list) else 'no'} SUS "
                                 f"statements in {locale}; SUS has exactly {SUS_ITEMS}.",
                                 "List the ten SUS statements in order.")
                return None
            items = tuple(i.strip() for i in raw)
        low, high = self._localized("lowLabel", locale), self._localized("highLabel", locale)
        return SurveyText(
            question=question.strip(),
            low_label=low.strip() if isinstance(low, str) and low.strip() else None,
            high_label=high.strip() if isinstance(high, str) and high.strip() else None,
            items=items,
        )

    def _tags(self, metric: str | None) -> tuple[str, ...]:
        raw = self.get("problemTags")
        if raw is None or raw == []:
            return ()
        if not isinstance(raw, list) or not all(isinstance(t, str) and t.strip() and len(t) <= 256 for t in raw):
            self.problem(f"Survey {self.label} has problem tags that are not a list of short names.",
                         "List the tags as short names, e.g. delivery, payment.")
            return ()
        if metric != "feedback":
            self.warning(f"Survey {self.label} lists problem tags, but only feedback prompts show them; "
                         "they are ignored.", "Clear the problem tags, or make the metric feedback.")
            return ()
        return tuple(dict.fromkeys(t.strip() for t in raw))
