"""Spaces modelled for Contentful Personalization (Ninetailed), compiled into Vary's own structs.

A space set up with the Contentful Personalization app keeps its experiences and audiences as entries
of the app's content types. Vary reads them as they are, so such a space is served unchanged — and
through the same code path as Vary's native ``varyExperience``/``varyAudience`` model: they become
:class:`~personalization.types.Experience` and :class:`~personalization.types.Audience` values, so
selection, exposures and measurement do not know which model an experience came from.

The content model read (the shapes ``@ninetailed/experience.js-utils`` parses):

- ``nt_experience``: ``nt_name``, ``nt_type`` (``nt_personalization`` → ``personalization``,
  ``nt_experiment`` → ``ab_test``), ``nt_config`` (``traffic`` 0–1 → traffic allocation;
  ``distribution``, one share per arm with index 0 = the baseline → weights; ``components``),
  ``nt_audience`` (optional link), ``nt_experience_id`` (the experience key; else the entry id).
- ``nt_config.components``: ``{"type": "EntryReplacement", "baseline": {"id"}, "variants": [{"id",
  "hidden"}]}`` — a missing ``type`` means EntryReplacement. The component whose baseline is an entry
  gives that entry's variants, so one experience can change several entries with one assignment (all
  compiled structs share the key, hence the bucket). A hidden variant (``hidden: true``) is the
  variant id :data:`HIDDEN_VARIANT` (``""``): the API serves it as ``hidden: true`` with no fields.
  A component with fewer variants than the experience has arms shows its baseline for the missing
  ones, as Contentful Personalization does. ``{"type": "InlineVariable", "key", "valueType",
  "baseline": {"value"}, "variants": [{"value"}]}`` components are custom flags
  (:mod:`content.experiences.ninetailed_flags`): the experience is also compiled under its own entry
  id, a pseudo-entry ``POST /v1/personalize`` with ``"flags": true`` decides, and served as
  Ninetailed's ``changes``. An experience of custom flags only needs no entry to link it.
- ``nt_audience``: ``nt_name``, ``nt_rules``, ``nt_audience_id`` (the audience key; else the entry id).
- Any entry with ``nt_experiences`` (links → ``nt_experience``) is a personalizable baseline; its
  experiences run in that order, after any native ``varyExperiences`` of the same entry.

Weights follow Contentful Personalization's arithmetic: the distribution's shares are laid end to end
over [0, 1]; a share past 1 is never reached, and a reachable share past the variants, or whatever is
left under 1, becomes an extra arm that shows the baseline — the SDK shows those visitors the
baseline too (logging them as arm 0). A distribution that does not fit is reported but kept. Without
a distribution, a personalization gives everything to its variants and an experiment splits evenly.
Without a traffic share nobody enters (Contentful Personalization's default), also reported.

Assignment uses Contentful Personalization's own hashing (``bucketing="ninetailed"``,
:mod:`personalization.decision.ninetailed_bucketing`): the entry id of the ``nt_experience`` and the
visitor id give the same traffic decision, arm and content as Ninetailed's SDK (for a distribution
that does not fit, the arm logged for the extra arms differs, as said above).

Audience rules become one GrowthBook condition (:mod:`content.experiences.ninetailed_rules`). Anything
Vary cannot map is reported with the entry id, and the audience (and every experience using it) is
switched off: the baseline is shown rather than content to the wrong visitors.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from functools import partial

import msgspec
from msgspec import Struct

from content.experiences.base import (
    MAX_KEY_LENGTH,
    CompiledExperiences,
    ConditionValidator,
    ContentModel,
    ExperienceCompiler,
    Space,
    compile_model,
    default_weights,
    edited_at,
    is_number,
    issue,
    reserved_key,
    text,
)
from content.experiences.ninetailed_flags import (
    CustomFlag,
    FlagExperience,
    collision_issues,
    parse_inline_variable,
)
from content.experiences.ninetailed_rules import rules_condition
from content.items import ContentItems
from content.resolve import NT_EXPERIENCES_FIELD
from content.snapshot import ContentEntry, ContentIssue
from personalization.types import Audience, Experience

__all__ = ["EXPERIENCE_TYPE", "AUDIENCE_TYPE", "HIDDEN_VARIANT", "MAX_FLAG_EXPERIENCES", "MODEL", "compile_ninetailed"]

EXPERIENCE_TYPE = "nt_experience"
AUDIENCE_TYPE = "nt_audience"
#: Most custom-flag experiences a space serves: a request with ``"flags": true`` decides each one.
MAX_FLAG_EXPERIENCES = 50
#: The variant id of a hidden variant: "render nothing" for that entry.
HIDDEN_VARIANT = ""
_TYPES = {"nt_personalization": "personalization", "nt_experiment": "ab_test"}
_TOLERANCE = 1e-9

#: The app's fields are not localized: the default locale's value, any locale as a fallback.
MODEL = ContentModel(
    experience_type=EXPERIENCE_TYPE,
    audience_type=AUDIENCE_TYPE,
    experiences_field=NT_EXPERIENCES_FIELD,
    field_name="nt_experiences",
    experience_name="a Contentful Personalization experience",
    experience_entries="nt_experience entries",
    label_fields=("nt_name", "name", "title", "text", "internalName"),
    any_locale=True,
)


def compile_ninetailed(
    items: ContentItems,
    default_locale: str,
    *,
    reserved_keys: Collection[str] = (),
    validate_condition: ConditionValidator | None = None,
) -> CompiledExperiences:
    """Compile every ``nt_audience`` and ``nt_experience`` of a space; report what cannot run and why.

    ``reserved_keys`` are experience keys already taken (by native experiences): a Ninetailed
    experience with one of them is switched off and reported. ``validate_condition`` checks the
    condition an audience's rules map to (unchecked without). ``by_entry`` holds each baseline's
    experiences compiled for that entry (its component's variants); ``experiences``, by key, each
    experience's first component.
    """
    experience_compiler = partial(_ExperienceCompiler, taken=set(reserved_keys))
    compiled = compile_model(
        items, default_locale, MODEL, _compile_audience, experience_compiler, validate_condition
    )
    entries = {entry.id: entry for entry in items.entries}
    flags = compiled.flags[:MAX_FLAG_EXPERIENCES]  # each is decided (and logged) on "flags": true
    issues = [*collision_issues(flags, entries), *(
        issue(entries[f.entry_id], f"Only {MAX_FLAG_EXPERIENCES} experiences with custom flags are served "
              "(each one a request decides logs an exposure); this one, after them by entry id, is not.",
              "Archive experiences whose flags are no longer read.")
        for f in compiled.flags[MAX_FLAG_EXPERIENCES:]
    )]  # fmt: skip
    if not issues:
        return compiled
    return msgspec.structs.replace(compiled, flags=flags, issues=(*compiled.issues, *issues))


def _compile_audience(
    entry: ContentEntry, locale: str, validate_condition: ConditionValidator | None
) -> tuple[Audience | None, list[ContentIssue]]:
    get = MODEL.settings(entry, locale)
    label = MODEL.label(entry, locale)
    rules = get("nt_rules")
    if rules is None:
        return None, [issue(entry, f"Audience {label} has no rules, so Vary cannot tell who is in it; "
                             "experiences using it are switched off.",
                             "Add rules to the audience in Contentful Personalization, or remove it "
                             "from its experiences.")]
    condition, problems = rules_condition(rules, validate_condition)
    if problems:
        return None, [issue(entry, f"Audience {label} has rules Vary cannot map: {'; '.join(problems)}. "
                             "It is switched off, and so is every experience using it (they show the "
                             "baseline).",
                             "Change those rules to ones Vary supports (see docs/contentful.md, \"Coming "
                             "from Contentful Personalization\"), or use a native Vary audience.")]
    key = text(get("nt_audience_id")) or entry.id
    name = text(get("nt_name")) or key
    return Audience(id=entry.id, key=key, name=name, condition=condition), []


# -- experiences -----------------------------------------------------------------------------------


class _Component(Struct, frozen=True):
    baseline: str
    variants: tuple[str, ...]


class _ExperienceCompiler(ExperienceCompiler):
    """Compiles one nt_experience entry (see :class:`~content.experiences.base.ExperienceCompiler`).

    ``taken``: the experience keys used so far, shared by one space's compilers.
    """

    model = MODEL

    def __init__(self, entry: ContentEntry, space: Space, baselines: list[str], *, taken: set[str]) -> None:
        super().__init__(entry, space, baselines)
        self.taken = taken

    def compile(self) -> tuple[Experience, dict[str, Experience]] | None:
        key = self._key()
        kind = self._type()
        config = self.get("nt_config")
        if not isinstance(config, dict):
            self.problem(f"Experience {self.label} has no configuration (nt_config), so Contentful "
                         "Personalization shows it to nobody.",
                         "Open the experience in Contentful Personalization and save its traffic, "
                         "distribution and variants.")
            return None
        components, flags = self._components(config.get("components"))
        arms = 1 + max((len(c.variants) for c in components), default=0)
        arms = max(arms, 1 + max((len(f.variants) for f in flags), default=0))
        traffic = self._traffic(config.get("traffic"))
        runs = bool(components or flags)
        weights = self._weights(config.get("distribution"), kind, arms) if kind and runs else None
        arms = len(weights) if weights else arms  # a distribution may add arms that show the baseline
        audience = self._audience()
        by_baseline = self._attach(components)
        if components or not flags:  # custom flags alone are read by key: no entry links them
            self.check_linked()
        if self._off or key is None or kind is None or weights is None or not runs:
            return None
        name = text(self.get("nt_name")) or key
        audience_link = self.get("nt_audience")
        audience_entry = self.linked_entry(audience_link)[0] if audience_link is not None else None
        updated_at = edited_at(self.entry, audience_entry)  # phases start at edits of either

        def experience(component: _Component) -> Experience:
            variants = component.variants + (component.baseline,) * (arms - 1 - len(component.variants))
            baseline = self.entries.get(component.baseline)
            return Experience(
                id=self.entry.id,
                key=key,
                name=name,
                type=kind,  # type: ignore[arg-type]  # one of _TYPES' values
                variants=variants,
                weights=weights,
                audience=audience,
                traffic_allocation=traffic,
                content_type=baseline.content_type if baseline is not None else None,
                updated_at=updated_at,
                bucketing="ninetailed",  # the SDK's own hash: visitors keep their Ninetailed variants
            )

        attached = {baseline_id: experience(c) for baseline_id, c in by_baseline.items()}
        if flags:  # decided under the experience's own entry id; every arm "serves" that entry
            attached[self.entry.id] = experience(_Component(self.entry.id, ()))
            self.flag_experience = FlagExperience(entry_id=self.entry.id, key=key, flags=tuple(flags))
        first = next(iter(attached.values()), None) or experience(components[0] if components else
                                                                    _Component(self.entry.id, ()))
        return first, attached

    def _key(self) -> str | None:
        key = text(self.get("nt_experience_id")) or self.entry.id
        if len(key) > MAX_KEY_LENGTH:
            self.problem(f"Experience {self.label} has an id longer than {MAX_KEY_LENGTH} characters.",
                         "Give it a shorter nt_experience_id.")
            return None
        if "{" in key or "}" in key:  # the Redis Cluster hash tag of its aggregates (docs/security.md, item 1)
            self.problem(f'Experience {self.label} has the id "{key}", which contains a brace.',
                         "Use letters, digits and dashes in nt_experience_id.")
            return None
        reserved = reserved_key(key)
        if reserved is not None:
            self.problem(f"Experience {self.label} has an id Vary cannot use: {reserved}.",
                         "Give it another nt_experience_id.")
            return None
        if key in self.taken:
            self.problem(f'Experience {self.label} has the key "{key}", which another experience '
                         "already uses.",
                         "Give this experience its own nt_experience_id; keys must be unique across "
                         "Vary and Contentful Personalization experiences.")
            return None
        self.taken.add(key)
        return key

    def _type(self) -> str | None:
        kind = self.get("nt_type")
        if kind in _TYPES:
            return _TYPES[kind]
        self.problem(f"Experience {self.label} has type {kind!r}; Vary runs nt_personalization and "
                     "nt_experiment.",
                     "Choose Personalization or Experiment as the experience's type.")
        return None

    def _components(self, raw: object) -> tuple[list[_Component], list[CustomFlag]]:
        if isinstance(raw, dict):  # seen in real spaces: a single component stored as an object
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            self.problem(f"Experience {self.label} has no components, so there is nothing to show "
                         "instead of the baseline.",
                         "Add a variant for the entry it should change.")
            return [], []
        components: list[_Component] = []
        flags: list[CustomFlag] = []
        for i, component in enumerate(raw):
            kind = component.get("type") if isinstance(component, dict) else None
            if kind == "InlineVariable":
                flag, why = parse_inline_variable(component, i)  # type: ignore[arg-type]  # a dict
                if flag is None:
                    self.problem(f"Experience {self.label}: {why}; that flag is not served (front ends "
                                 "reading it keep their default).",
                                 "Set the flag's value type and a value for the baseline and every "
                                 "variant again in Contentful Personalization.", switches_off=False)
                elif any(f.key == flag.key for f in flags):
                    self.problem(f'Experience {self.label} sets the custom flag "{flag.key}" twice; '
                                 "the first is served.",
                                 "Remove the second component with that key.", switches_off=False)
                else:
                    flags.append(flag)
                continue
            if not isinstance(component, dict) or kind not in (None, "EntryReplacement"):
                self.problem(f"Experience {self.label} has component {i + 1} of type {kind!r}, which "
                             "Vary does not know; it is ignored.",
                             "Use entry replacements (a baseline entry and its variants).",
                             switches_off=False)
                continue
            baseline = component.get("baseline")
            baseline_id = text(baseline.get("id")) if isinstance(baseline, dict) else None
            variants = component.get("variants")
            if isinstance(variants, dict):  # seen in real spaces: a single variant stored as an object
                variants = [variants]
            if baseline_id is None or not isinstance(variants, list):
                self.problem(f"Experience {self.label} has component {i + 1} without a baseline or "
                             "variants.",
                             "Pick the baseline entry and its variants again in Contentful "
                             "Personalization.")
                continue
            ids: list[str] = []
            for variant in variants:
                if isinstance(variant, dict) and variant.get("hidden") is True:
                    ids.append(HIDDEN_VARIANT)
                    continue
                variant_id = text(variant.get("id")) if isinstance(variant, dict) else None
                target = self.entries.get(variant_id) if variant_id else None
                if target is None:
                    shown = f'"{variant_id}"' if variant_id else "an entry"
                    self.problem(f"Experience {self.label} has variant {shown} for "
                                 f'"{baseline_id}", which is not published or no longer exists.',
                                 "Publish that entry, or remove it from the experience's variants.")
                    continue
                ids.append(target.id)
            components.append(_Component(baseline_id, tuple(ids)))
        if raw and not components and not flags and not self._off:
            self.problem(f"Experience {self.label} has no entry replacement or custom flag Vary can serve.",
                         "Add a variant entry for the entry it should change.")
        return components, flags

    def _traffic(self, traffic: object) -> float:
        if traffic is None:
            self.problem(f"Experience {self.label} has no traffic share; like Contentful "
                         "Personalization, Vary lets nobody in (everyone sees the baseline).",
                         "Set the experience's traffic (1 = everyone in the audience).",
                         switches_off=False)
            return 0.0
        if not is_number(traffic) or not 0 <= traffic <= 1:
            self.problem(f"Experience {self.label} has traffic {traffic!r}; it is a share between 0 "
                         "and 1 (0.5 = half the audience takes part).",
                         "Set a traffic share between 0 and 1.")
            return 0.0
        return float(traffic)

    def _weights(self, distribution: object, kind: str, arms: int) -> tuple[float, ...] | None:
        if distribution is None or distribution == []:
            return default_weights(kind, arms)
        if not isinstance(distribution, list) or not all(is_number(d) and d >= 0 for d in distribution):
            self.problem(f"Experience {self.label} has a distribution that is not a list of shares of 0 "
                         f"or more: {distribution!r}.",
                         "Set the distribution again in Contentful Personalization (baseline first).")
            return None
        total = math.fsum(distribution)
        if len(distribution) == arms and abs(total - 1.0) <= _TOLERANCE:
            return tuple(float(d) for d in distribution)
        # As the SDK's ranges: shares laid end to end over [0, 1] (past 1: never reached); a reachable
        # share past the variants is an arm that shows the baseline, and so is what is left over.
        weights: list[float] = []
        remaining = 1.0
        for share in distribution:
            taken = min(float(share), remaining) if remaining > _TOLERANCE else 0.0
            weights.append(taken)
            remaining -= taken
        while len(weights) > arms and weights[-1] == 0.0:
            weights.pop()
        weights += [0.0] * (arms - len(weights))
        extra = len(weights) - arms
        if remaining > _TOLERANCE:
            weights.append(remaining)
            extra += 1
        shown = ", ".join(f"{w:.4g}" for w in weights)
        extras = (f"; the last {extra} arm{'s' if extra > 1 else ''} show{'' if extra > 1 else 's'} the "
                  "baseline, where the SDK shows it too but logs arm 0" if extra else "")
        self.problem(f"Experience {self.label} has a distribution of {len(distribution)} shares adding "
                     f"up to {total:g} for {arms} arms (the baseline and {arms - 1} variants); Vary "
                     f"serves [{shown}], so every visitor sees what Contentful Personalization's SDK "
                     f"shows them{extras}.",
                     "Set one share per arm, baseline first, adding up to 1.",
                     switches_off=False)
        return tuple(weights)

    def _audience(self) -> Audience | None:
        link = self.get("nt_audience")
        if link is None:
            return None
        target, shown = self.linked_entry(link)
        if target is None or target.content_type != AUDIENCE_TYPE:
            self.problem(f"Experience {self.label} links audience {shown}, which is not a published "
                         "Contentful Personalization audience.",
                         "Publish the audience, link another one, or clear the audience to show the "
                         "experience to everyone.")
            return None
        return self.compiled_audience(target, MODEL.label(target, ""))

    def _attach(self, components: list[_Component]) -> dict[str, _Component]:
        by_baseline: dict[str, _Component] = {}
        for component in components:
            by_baseline.setdefault(component.baseline, component)
        attached: dict[str, _Component] = {}
        for baseline_id in self.baselines:
            component = by_baseline.get(baseline_id)
            if component is None:
                baseline = self.entries[baseline_id]
                self.issues.append(issue(
                    baseline,
                    f"Entry {MODEL.label(baseline, '')} links experience {self.label}, "
                    "which has no variants for this entry; it is ignored here.",
                    "Add this entry as a baseline with variants in the experience, or remove the "
                    "experience from the entry's nt_experiences."))
                continue
            attached[baseline_id] = component
        for baseline_id in by_baseline:
            if baseline_id not in self.baselines and self.baselines:
                self.problem(f'Experience {self.label} has variants for "{baseline_id}", which does not '
                             "list it in nt_experiences; those variants are not shown.",
                             f'Add the experience to the nt_experiences of "{baseline_id}", or remove '
                             "that component.", switches_off=False)
        return attached
