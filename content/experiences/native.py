"""Marketers' ``varyExperience`` and ``varyAudience`` entries compiled into Vary's own structs.

Contentful validates single fields; it cannot check that an experience's variants match the entry
they replace, that weights add up, or that an audience's rules parse. This module does, because a
mis-modelled experience must not break the space: it is switched off, reported as a
:class:`~content.snapshot.ContentIssue` that says in plain words which entry to open and what to
change, and everything else keeps serving.

Compilation rules (DESIGN §3, §5):

- An audience's simple fields become one GrowthBook condition — ``segment`` + ``minScore`` →
  ``{"segments.<segment>": {"$gte": minScore}}`` (``minScore`` defaults to 0.5: more likely in the
  segment than not), ``countries`` → ``{"country": {"$in": […]}}``, ``channels``, ``devices``,
  ``newVisitors`` → ``{"new_visitor": true}`` — and is ``$and``-ed with the ``rules`` JSON when both
  are set. No condition at all means everyone.
- An experience's variants are entry ids; the baseline (the entry that links the experience) is
  variant 0 and is not listed. Weights have one number per arm (control first), each ≥ 0, summing
  to 1; left empty they default to everything on the variants (personalization) or an even split
  (ab_test, bandit).
- ``guardrails`` (a JSON list, :mod:`.guardrails`) become ``Experience.guardrails``; an entry Vary
  cannot read is reported and left out, and the experience runs without it. ``updated_at`` is the
  later publication of the experience entry and its audience entry (phases start at such edits).
- ``layer`` (a short name) and ``layerRange`` ([start, end) within [0, 1)) make experiences
  mutually exclusive (:mod:`.layers`: equal shares in key order when no range is given; a clash is
  reported and switches the experience off).
- ``frequencyCap`` (``{"max": 3, "per": "day"}``, :mod:`.frequency_caps`) caps how often one
  person is served the experience; a value Vary cannot read is reported and switches it off.
- The key ``_global`` is Vary's (the global holdout's exposures) and cannot be an experience's.
- An entry's experiences run in its ``varyExperiences`` order; the first whose audience matches
  decides, so only experiences that compiled are kept, in that order.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from functools import partial

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
)
from content.experiences.frequency_caps import parse_frequency_cap
from content.experiences.guardrails import parse_guardrails
from content.experiences.layers import apply_layers, parse_layer
from content.items import ContentItems, link_id
from content.resolve import EXPERIENCES_FIELD
from content.snapshot import ContentEntry, ContentIssue
from personalization.types import CHANNELS, Audience, Experience, Guardrail, goal_name_problem

__all__ = [
    "AUDIENCE_TYPE",
    "EXPERIENCE_TYPE",
    "EXPERIENCE_TYPES",
    "DEFAULT_MIN_SCORE",
    "MODEL",
    "compile_native",
    "audience_condition",
]

AUDIENCE_TYPE = "varyAudience"
EXPERIENCE_TYPE = "varyExperience"
EXPERIENCE_TYPES: tuple[str, ...] = ("personalization", "ab_test", "bandit")
DEFAULT_MIN_SCORE = 0.5
_WEIGHT_TOLERANCE = 1e-6

MODEL = ContentModel(
    experience_type=EXPERIENCE_TYPE,
    audience_type=AUDIENCE_TYPE,
    experiences_field=EXPERIENCES_FIELD,
    field_name="Vary experiences",
    experience_name="a Vary experience",
    experience_entries="Vary experience entries",
    label_fields=("name", "title", "text"),
)


def compile_native(
    items: ContentItems,
    default_locale: str,
    *,
    plugin_types: frozenset[str] = frozenset(),
    validate_condition: ConditionValidator | None = None,
) -> CompiledExperiences:
    """Compile every audience and experience of a space; report what cannot run and why.

    ``plugin_types`` are the experience types installed plugins add (valid besides
    :data:`EXPERIENCE_TYPES`); ``validate_condition`` checks an audience's rules (unchecked without).
    """
    experience_compiler = partial(_ExperienceCompiler, key_owner={}, plugin_types=plugin_types)
    compiled = compile_model(
        items, default_locale, MODEL, _compile_audience, experience_compiler, validate_condition
    )
    return apply_layers(compiled, MODEL)


def audience_condition(
    *,
    segment: str | None = None,
    min_score: float | None = None,
    countries: list[str] | None = None,
    channels: list[str] | None = None,
    devices: list[str] | None = None,
    new_visitors: bool = False,
    rules: dict[str, object] | None = None,
) -> dict[str, object]:
    """The single GrowthBook condition for an audience's simple fields and rules (see module doc)."""
    simple: dict[str, object] = {}
    if segment:
        simple[f"segments.{segment}"] = {
            "$gte": DEFAULT_MIN_SCORE if min_score is None else min_score
        }
    if countries:
        simple["country"] = {"$in": list(countries)}
    if channels:
        simple["channel"] = {"$in": list(channels)}
    if devices:
        simple["device"] = {"$in": list(devices)}
    if new_visitors:
        simple["new_visitor"] = True
    if simple and rules:
        return {"$and": [simple, rules]}
    return simple or dict(rules or {})


# -- audiences -------------------------------------------------------------------------------------


def _compile_audience(
    entry: ContentEntry, locale: str, validate_condition: ConditionValidator | None
) -> tuple[Audience | None, list[ContentIssue]]:
    get = MODEL.settings(entry, locale)
    label = MODEL.label(entry, locale)
    problems: list[tuple[str, str]] = []

    segment = get("segment")
    if segment is not None and (not isinstance(segment, str) or not segment.strip()):
        problems.append((f"Audience {label} has a segment that is not a name.",
                         "Enter the segment's name as the model knows it, e.g. price_sensitive."))
        segment = None
    segment = segment.strip() if isinstance(segment, str) else None

    min_score = get("minScore")
    if min_score is not None:
        if not is_number(min_score) or not 0 <= min_score <= 1:
            problems.append((f"Audience {label} has minimum score {min_score!r}; segment scores are "
                             "probabilities between 0 and 1.",
                             "Enter a minimum score between 0 and 1, e.g. 0.6."))
        elif segment is None:
            problems.append((f"Audience {label} has a minimum score but no segment, so Vary cannot "
                             "tell which score to compare.",
                             "Enter the segment's name (e.g. price_sensitive) or clear the minimum score."))

    countries = _symbols(get("countries"))
    if countries is None or any(len(c) != 2 or not c.isalpha() for c in countries):
        problems.append((f"Audience {label} lists countries that are not two-letter country codes: "
                         f"{get('countries')!r}.",
                         "Use ISO 3166 country codes such as DE, CA or US."))
        countries = []
    countries = [c.upper() for c in countries]

    channels = _symbols(get("channels"))
    unknown = [c for c in channels or () if c.lower() not in CHANNELS]
    if channels is None or unknown:
        problems.append((f"Audience {label} lists channels Vary does not know: "
                         f"{', '.join(unknown) or repr(get('channels'))}.",
                         f"Pick channels from: {', '.join(CHANNELS)}."))
        channels = []
    channels = [c.lower() for c in channels]

    devices = _symbols(get("devices"))
    if devices is None:
        problems.append((f"Audience {label} has devices that are not a list of names.",
                         "Pick devices such as desktop, mobile or tablet."))
        devices = []
    devices = [d.lower() for d in devices]

    rules = get("rules")
    if rules is not None and not isinstance(rules, dict):
        problems.append((f"Audience {label} has rules that are not a JSON object.",
                         'Write the rules as a JSON object in GrowthBook\'s condition syntax, e.g. '
                         '{"country": {"$in": ["CA", "US"]}}, or clear the field.'))
        rules = None
    elif rules and validate_condition is not None:
        rule_problems = [str(problem) for problem in validate_condition(rules)]
        if rule_problems:
            problems.append((f"Audience {label} has rules Vary cannot read: {'; '.join(rule_problems)}.",
                             "Correct the rules (GrowthBook's condition syntax, e.g. "
                             '{"country": {"$in": ["CA", "US"]}}) or clear the field.'))

    issues = [issue(entry, problem, fix) for problem, fix in problems]
    if issues:
        return None, issues
    condition = audience_condition(
        segment=segment,
        min_score=min_score,
        countries=countries,
        channels=channels,
        devices=devices,
        new_visitors=get("newVisitors") is True,
        rules=rules or None,
    )
    key = get("key") if isinstance(get("key"), str) and get("key") else entry.id
    name = get("name") if isinstance(get("name"), str) and get("name") else key
    return Audience(id=entry.id, key=key, name=name, condition=condition), []


# -- experiences -----------------------------------------------------------------------------------


class _ExperienceCompiler(ExperienceCompiler):
    """Compiles one varyExperience entry (see :class:`~content.experiences.base.ExperienceCompiler`).

    ``key_owner``: the entry that has each key so far, shared by one space's compilers.
    """

    model = MODEL

    def __init__(
        self,
        entry: ContentEntry,
        space: Space,
        baselines: list[str],
        *,
        key_owner: dict[str, ContentEntry],
        plugin_types: frozenset[str],
    ) -> None:
        super().__init__(entry, space, baselines)
        self.key_owner = key_owner
        self.plugin_types = plugin_types

    def compile(self) -> tuple[Experience, dict[str, Experience]] | None:
        key = self._key()
        kind = self._type()
        problems_before = len(self.issues)
        variants, content_type = self._variants()
        variants_ok = len(self.issues) == problems_before
        self._check_baselines(content_type)
        audience, audience_entry = self._audience()
        guardrails = self._guardrails()
        layer, layer_range, layer_problems = parse_layer(self.get("layer"), self.get("layerRange"))
        for problem, fix in layer_problems:
            self.problem(f"Experience {self.label} {problem}", fix)
        frequency_cap, cap_problems = parse_frequency_cap(self.get("frequencyCap"))
        for problem, fix in cap_problems:
            self.problem(f"Experience {self.label} {problem}", fix)
        # With a variant missing, the weights cannot fit either: one issue is enough.
        weights = self._weights(kind, len(variants)) if kind is not None and variants_ok else None
        traffic = self._share("trafficAllocation", "traffic allocation", 1.0,
                              "(0.5 = half the audience takes part)")
        holdout = self._share("holdout", "holdout", 0.0,
                              "(0.1 = a tenth of those taking part see the original)")
        starts_at = self._date("startsAt", "start")
        ends_at = self._date("endsAt", "end")
        if starts_at is not None and ends_at is not None and ends_at <= starts_at:
            self.problem(f"Experience {self.label} ends before it starts.",
                         "Set an end date after the start date, or clear one of them.")
        self.check_linked()
        if self._off or key is None or kind is None or weights is None:
            return None
        name = self.get("name")
        experience = Experience(
            id=self.entry.id,
            key=key,
            name=name if isinstance(name, str) and name else key,
            type=kind,  # type: ignore[arg-type]  # checked against EXPERIENCE_TYPES
            variants=tuple(variants),
            weights=weights,
            audience=audience,
            traffic_allocation=traffic,
            holdout=holdout,
            goals=self._goals(),
            starts_at=starts_at,
            ends_at=ends_at,
            content_type=content_type,
            guardrails=guardrails,
            layer=layer,
            layer_range=layer_range,
            frequency_cap=frequency_cap,
            updated_at=edited_at(self.entry, audience_entry),
        )
        return experience, {baseline_id: experience for baseline_id in self.baselines}

    def _goals(self) -> tuple[str, ...]:
        """The goals list, without names Vary reserves (``n:…``, personalization/measurement/goals.py):
        such a goal is left out and said, the experience keeps running on the others."""
        goals = []
        for goal in (g for g in _symbols(self.get("goals")) or () if g):
            problem = goal_name_problem(goal)
            if problem is None:
                goals.append(goal)
            else:
                self.problem(f"Experience {self.label}: a goal is left out: {problem}.",
                             "Rename the goal (and the conversion events that send it).", switches_off=False)
        return tuple(goals)

    def _key(self) -> str | None:
        key = self.get("key")
        if not isinstance(key, str) or not key.strip():
            self.problem(f"Experience {self.label} has no key, so visitors cannot be assigned "
                         "consistently.",
                         "Give it a unique key, e.g. hero-sale, and keep it while the experience runs.")
            return None
        key = key.strip()
        if len(key) > MAX_KEY_LENGTH:
            self.problem(f"Experience {self.label} has a key longer than {MAX_KEY_LENGTH} characters.",
                         "Give it a shorter key, e.g. hero-sale.")
            return None
        if "{" in key or "}" in key:
            # The key is the Redis Cluster hash tag of the experience's aggregates (vary:agg:{<key>}:…):
            # a brace would split them across slots, so their counting would fail (docs/security.md, item 1).
            self.problem(f'Experience {self.label} has the key "{key}", which contains a brace.',
                         "Use letters, digits and dashes, e.g. hero-sale.")
            return None
        reserved = reserved_key(key)
        if reserved is not None:
            self.problem(f"Experience {self.label} has a key Vary cannot use: {reserved}.",
                         "Give it another key, e.g. hero-sale.")
            return None
        owner = self.key_owner.setdefault(key, self.entry)
        if owner is not self.entry:
            self.problem(f'Experience {self.label} uses the key "{key}", which experience '
                         f"{MODEL.label(owner, self.locale)} already uses.",
                         "Give this experience its own key; keys must be unique.")
            return None
        return key

    def _type(self) -> str | None:
        kind = self.get("type")
        # Plugins may add types (personalization/plugins.py); they are valid while one is installed.
        if kind in EXPERIENCE_TYPES or kind in self.plugin_types:
            return str(kind)
        what = f'type "{kind}"' if kind else "no type"
        known = ", ".join((*EXPERIENCE_TYPES, *sorted(self.plugin_types)))
        self.problem(f"Experience {self.label} has {what}; Vary runs {known}.",
                     f"Choose one of {known} as the type.")
        return None

    def _variants(self) -> tuple[list[str], str | None]:
        links = self.get("variants")
        if not isinstance(links, list) or not links:
            self.problem(f"Experience {self.label} has no variants, so there is nothing to show instead "
                         "of the original.",
                         "Link at least one variant entry.")
            return [], None
        variants: list[str] = []
        types: dict[str, None] = {}
        for link in links:
            target_id = link_id(link, "Entry")
            target = self.entries.get(target_id) if target_id else None
            if target is None:
                shown = f'"{target_id}"' if target_id else "an entry"
                self.problem(f"Experience {self.label} links variant {shown}, which is not published or "
                             "no longer exists.",
                             "Publish that entry, or remove it from the variants.")
                continue
            variants.append(target.id)
            types[target.content_type] = None
        if len(types) > 1:
            self.problem(f"Experience {self.label} has variants of different content types "
                         f"({', '.join(sorted(types))}).",
                         "Use variants of one content type: the same as the entry they replace.")
            return variants, None
        return variants, next(iter(types), None)

    def _check_baselines(self, content_type: str | None) -> None:
        if content_type is None:
            return
        for baseline_id in self.baselines:
            baseline = self.entries[baseline_id]
            if baseline.content_type != content_type:
                on = MODEL.label(baseline, self.locale)
                self.problem(f"Experience {self.label} is on {on} ({baseline.content_type}), but its "
                             f"variants are {content_type} entries. A variant must be the same content "
                             "type as the entry it replaces.",
                             f"Use {baseline.content_type} entries as variants, or remove the experience "
                             f"from {baseline.id}'s Vary experiences.")

    def _guardrails(self) -> tuple[Guardrail, ...]:
        guardrails, problems = parse_guardrails(self.get("guardrails"))
        for problem in problems:
            self.problem(f"Experience {self.label}: {problem}",
                         'Write each guardrail as {"metric": "csat"} or {"metric": "goal:purchase", '
                         '"harm": "decrease"}; metrics: task_success, abandonment, csat, ces, nps, '
                         "goal:<goal name>.", switches_off=False)
        return guardrails

    def _audience(self) -> tuple[Audience | None, ContentEntry | None]:
        """The compiled audience and its entry (whose edits start a new phase too)."""
        link = self.get("audience")
        if link is None:
            return None, None
        target, shown = self.linked_entry(link)
        if target is None:
            self.problem(f"Experience {self.label} links audience {shown}, which is not "
                         "published or no longer exists.",
                         "Publish the audience, link another one, or clear the audience to show the "
                         "experience to everyone.")
            return None, None
        if target.content_type != AUDIENCE_TYPE:
            self.problem(f'Experience {self.label} links "{target.id}" ({target.content_type}) as its '
                         "audience, but that is not a Vary audience.",
                         "Link a Vary audience entry, or clear the audience to show the experience to "
                         "everyone.")
            return None, None
        return self.compiled_audience(target, MODEL.label(target, self.locale)), target

    def _weights(self, kind: str, variant_count: int) -> tuple[float, ...] | None:
        arms = variant_count + 1
        given = self.get("weights")
        if given is None or given == []:
            return default_weights(kind, arms)
        example = _even_split_example(arms)
        if not isinstance(given, list) or not all(is_number(w) for w in given):
            self.problem(f"Experience {self.label} has weights that are not a list of numbers.",
                         f"Enter weights as a JSON list such as {example}, or clear them for the default "
                         "split.")
            return None
        if len(given) != arms:
            self.problem(f"Experience {self.label} has {len(given)} weights but needs {arms}: one for "
                         f"the original and one for each of its {variant_count} variants.",
                         f"Enter {arms} weights that add up to 1, e.g. {example}, or clear them for the "
                         "default split.")
            return None
        if any(w < 0 or not math.isfinite(w) for w in given):
            self.problem(f"Experience {self.label} has a negative weight.",
                         "Use weights of 0 or more that add up to 1.")
            return None
        total = math.fsum(given)
        if abs(total - 1.0) > _WEIGHT_TOLERANCE:
            self.problem(f"Experience {self.label} has weights that add up to {total:g}, not 1.",
                         f"Adjust the weights so they add up to exactly 1, e.g. {example}.")
            return None
        return tuple(float(w) for w in given)

    def _share(self, field: str, what: str, default: float, meaning: str) -> float:
        value = self.get(field)
        if value is None:
            return default
        if not is_number(value) or not 0 <= value <= 1:
            self.problem(f"Experience {self.label} has {what} {value!r}; it is a share between 0 and 1 "
                         f"{meaning}.",
                         f"Enter a {what} between 0 and 1.")
            return default
        return float(value)

    def _date(self, field: str, what: str) -> float | None:
        value = self.get(field)
        if value is None:
            return None
        try:
            return _timestamp(value)
        except (TypeError, ValueError):
            self.problem(f"Experience {self.label} has a {what} date Vary cannot read: {value!r}.",
                         f"Pick the {what} date again in Contentful's date picker, or clear it.")
            return None


# -- helpers ---------------------------------------------------------------------------------------


def _symbols(value: object) -> list[str] | None:
    """A list of strings (missing = empty); ``None`` when the value is something else."""
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    return None


def _timestamp(value: object) -> float:
    """A Contentful Date value (ISO 8601; date only or without offset = UTC) as Unix seconds."""
    if not isinstance(value, str):
        raise TypeError("not a string")
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _even_split_example(arms: int) -> str:
    """An even split written with two decimals that still adds up to 1, e.g. [0.34, 0.33, 0.33]."""
    cents = [100 // arms] * arms
    for i in range(100 - sum(cents)):
        cents[i] += 1
    return "[" + ", ".join(f"{c / 100:g}" for c in cents) + "]"
