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
  ones, as Contentful Personalization does. ``InlineVariable`` components are not supported yet.
- ``nt_audience``: ``nt_name``, ``nt_rules``, ``nt_audience_id`` (the audience key; else the entry id).
- Any entry with ``nt_experiences`` (links → ``nt_experience``) is a personalizable baseline; its
  experiences run in that order, after any native ``varyExperiences`` of the same entry.

Weights follow Contentful Personalization's arithmetic: the distribution's shares are laid end to end
over [0, 1]; a share past 1 is never reached and whatever is left over (or belongs to an arm that does
not exist) shows the baseline. A distribution that needed such repair is reported but kept. Without
a distribution, a personalization gives everything to its variants and an experiment splits evenly.
Without a traffic share nobody enters (Contentful Personalization's default), also reported.

Audience rules (``{"any": [{"all": [rule, …]}, …]}``; ``any``/``all`` nest) become one GrowthBook
condition over Vary's visitor attributes (``personalization.decision.context``) — see :func:`rules_condition`
and :data:`OPERATORS` for the rule-by-rule and operator-by-operator mapping. Anything Vary cannot map
is reported with the entry id, and the audience (and every experience using it) is switched off: the
baseline is shown rather than content to the wrong visitors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from typing import Any

import msgspec
from msgspec import Struct

from content.experiences import CompiledExperiences
from content.items import ContentItems, link_id
from content.resolve import NT_EXPERIENCES_FIELD
from content.snapshot import ContentEntry, ContentIssue
from personalization.decision.context import CONTINENTS
from personalization.types import Audience, Experience

__all__ = [
    "EXPERIENCE_TYPE",
    "AUDIENCE_TYPE",
    "HIDDEN_VARIANT",
    "OPERATORS",
    "RULE_TYPES",
    "NinetailedCompiled",
    "compile_ninetailed",
    "rules_condition",
    "with_ninetailed",
]

EXPERIENCE_TYPE = "nt_experience"
AUDIENCE_TYPE = "nt_audience"
#: The variant id of a hidden variant: "render nothing" for that entry.
HIDDEN_VARIANT = ""
_TYPES = {"nt_personalization": "personalization", "nt_experiment": "ab_test"}
_MAX_KEY_LENGTH = 256
_TOLERANCE = 1e-9

#: Ninetailed operator → how its value becomes a GrowthBook clause.
OPERATORS: dict[str, str] = {
    "equal": "$eq",
    "notEqual": "$ne",
    "contains": "$regex (escaped value)",
    "notContains": "$not $regex (escaped value)",
    "startsWith": "$regex ^value",
    "endsWith": "$regex value$",
    "greaterThan": "$gt",
    "greaterThanInclusive": "$gte",
    "lessThan": "$lt",
    "lessThanInclusive": "$lte",
    "in": "$in",
    "notIn": "$nin",
    "exists": "$exists true",
    "notExists": "$exists false",
}
_ALIASES = {"equals": "equal", "notEquals": "notEqual", "is": "equal", "isNot": "notEqual"}
_RELATIONAL = {"greaterThan": "$gt", "greaterThanInclusive": "$gte", "lessThan": "$lt",
               "lessThanInclusive": "$lte", "equal": "$eq", "notEqual": "$ne"}  # fmt: skip

#: Rule type → the visitor attribute(s) it reads.
RULE_TYPES: dict[str, str] = {
    "page": "page (url), page_path, page_query.<name>, utm.<name>, referrer — the current request",
    "track": "profile.goals.<event> ($gte count): Vary conversion goals",
    "identify": "traits.<key>",
    "location": "country, continent, city, region",
    "isReturningVisitor": "returning_visitor",
    "device": "device",
}
_UTM = ("campaign", "source", "medium", "term", "content")
_CONTINENT_NAMES = {
    "africa": "AF", "antarctica": "AN", "asia": "AS", "europe": "EU", "north america": "NA",
    "oceania": "OC", "australia": "OC", "south america": "SA",
}  # fmt: skip
_CONTINENT_CODES = frozenset(CONTINENTS.values())


class NinetailedCompiled(Struct, frozen=True, kw_only=True):
    """The result of :func:`compile_ninetailed` (shaped like ``content.experiences.CompiledExperiences``).

    ``experiences`` by key (each experience's first component; every one that compiled, attached or
    not); ``audiences`` by the audience's entry id; ``by_entry``: each baseline entry's experiences in
    ``nt_experiences`` order, compiled for that entry (its component's variants); ``issues``.
    """

    experiences: dict[str, Experience]
    audiences: dict[str, Audience]
    by_entry: dict[str, tuple[Experience, ...]]
    issues: tuple[ContentIssue, ...]

    @property
    def attachments(self) -> dict[str, list[str]]:
        """Baseline entry id → experience keys, in ``nt_experiences`` order."""
        return {entry_id: [e.key for e in experiences] for entry_id, experiences in self.by_entry.items()}


def compile_ninetailed(
    items: ContentItems, default_locale: str, *, reserved_keys: Collection[str] = ()
) -> NinetailedCompiled:
    """Compile every ``nt_audience`` and ``nt_experience`` of a space; report what cannot run and why.

    ``reserved_keys`` are experience keys already taken (by native experiences): a Ninetailed
    experience with one of them is switched off and reported.
    """
    entries = {entry.id: entry for entry in items.entries}
    issues: list[ContentIssue] = []

    audiences: dict[str, Audience] = {}
    for entry in _of_type(entries, AUDIENCE_TYPE):
        audience, problems = _compile_audience(entry, default_locale)
        issues.extend(problems)
        if audience is not None:
            audiences[entry.id] = audience

    linked = _linked(entries, default_locale, issues)
    attached: dict[str, list[str]] = {}
    for baseline_id, experience_ids in linked.items():
        for experience_id in experience_ids:
            attached.setdefault(experience_id, []).append(baseline_id)

    experiences: dict[str, Experience] = {}
    per_entry: dict[tuple[str, str], Experience] = {}
    taken = set(reserved_keys)
    ordered = sorted(
        (e for e in entries.values() if e.content_type == EXPERIENCE_TYPE), key=lambda e: (e.created_at, e.id)
    )
    for entry in ordered:
        compiler = _ExperienceCompiler(entry, default_locale, entries, audiences, attached.get(entry.id, []))
        compiled = compiler.compile(taken)
        issues.extend(compiler.issues)
        if compiled is None:
            continue
        first, by_baseline = compiled
        experiences[first.key] = first
        for baseline_id, experience in by_baseline.items():
            per_entry[(baseline_id, entry.id)] = experience

    by_entry: dict[str, tuple[Experience, ...]] = {}
    for baseline_id, experience_ids in linked.items():
        chosen = tuple(per_entry[(baseline_id, i)] for i in experience_ids if (baseline_id, i) in per_entry)
        if chosen:
            by_entry[baseline_id] = chosen
    return NinetailedCompiled(
        experiences=experiences, audiences=audiences, by_entry=by_entry, issues=tuple(issues)
    )


def with_ninetailed(
    native: CompiledExperiences, items: ContentItems, default_locale: str
) -> CompiledExperiences:
    """Native compiled experiences (``CompiledExperiences``) with the space's Ninetailed ones added.

    Both models can live in one space: experiences and audiences are merged (a Ninetailed experience
    whose key a native one has is reported and left out), and an entry with both ``varyExperiences``
    and ``nt_experiences`` runs the native ones first, then the Ninetailed ones.
    """
    nt = compile_ninetailed(items, default_locale, reserved_keys=native.experiences.keys())
    if not (nt.experiences or nt.audiences or nt.issues):
        return native
    by_entry = dict(native.by_entry)
    for entry_id, experiences in nt.by_entry.items():
        by_entry[entry_id] = (*by_entry.get(entry_id, ()), *experiences)
    return msgspec.structs.replace(
        native,
        experiences={**native.experiences, **nt.experiences},
        audiences={**native.audiences, **nt.audiences},
        by_entry=by_entry,
        issues=(*native.issues, *nt.issues),
    )


# -- audience rules --------------------------------------------------------------------------------


def rules_condition(rules: object) -> tuple[dict[str, Any], list[str]]:
    """``nt_rules`` as one GrowthBook condition, and the problems (empty when everything mapped).

    ``any`` → ``$or``, ``all`` → ``$and`` (a single item is not wrapped), a rule → its clause:

    ===================  ==========================================================================
    ``page``             ``conditions`` (or the rule's own ``key``/``operator``/``value``) on
                         ``url`` → ``page``, ``path`` → ``page_path``, ``referrer`` → ``referrer``,
                         ``utm_<name>`` → ``utm.<name>``, ``query.<name>`` → ``page_query.<name>``.
                         The current request's page: a ``count`` above 1 cannot be checked.
    ``track``            event ``key`` → ``profile.goals.<key>`` ``$gte`` ``count`` (default 1;
                         an ``operator`` compares the count instead). Event property conditions are
                         not supported.
    ``identify``         ``traits.<key>`` with the operator.
    ``location``         ``country``/``countryCode`` → ``country``, ``continent`` → ``continent``
                         (codes or names), ``city`` → ``city``, ``region``/``regionCode`` → ``region``.
    ``isReturningVisitor``  ``returning_visitor`` equal to ``value`` (default true).
    ``device``           ``device`` with the operator (lower-cased).
    ===================  ==========================================================================
    """
    problems: list[str] = []
    if not isinstance(rules, dict):
        return {}, ['the rules are not a JSON object such as {"any": [{"all": [...]}]}']
    condition = _node(rules, "rules", problems)
    if not problems and not condition:
        problems.append("there are no rules")
    if not problems:
        try:
            from personalization.decision.audiences import validate_condition
        except ImportError:  # pragma: no cover - the evaluator ships with Vary
            pass
        else:
            problems.extend(str(p) for p in validate_condition(condition))
    return condition or {}, problems


def _node(node: object, where: str, problems: list[str]) -> dict[str, Any] | None:
    if not isinstance(node, dict):
        problems.append(f"{where}: expected a rule or an any/all group, got {_kind(node)}")
        return None
    if "any" in node or "all" in node:
        combinator = "any" if "any" in node else "all"
        items = node[combinator]
        if not isinstance(items, list):
            problems.append(f"{where}.{combinator}: expected a list")
            return None
        parts = [_node(item, f"{where}.{combinator}[{i}]", problems) for i, item in enumerate(items)]
        kept = [p for p in parts if p]
        if not kept:
            return {}
        if len(kept) == 1:
            return kept[0]
        return {"$or" if combinator == "any" else "$and": kept}
    return _rule(node, where, problems)


def _rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    kind = rule.get("type")
    if kind == "page":
        return _page_rule(rule, where, problems)
    if kind == "track":
        return _track_rule(rule, where, problems)
    if kind == "identify":
        key = _text(rule.get("key"))
        if key is None:
            problems.append(f"{where}: an identify rule needs the trait's key")
            return None
        key = key.removeprefix("traits.")
        return _clause(f"traits.{key}", rule, where, problems)
    if kind == "location":
        return _location_rule(rule, where, problems)
    if kind == "isReturningVisitor":
        value = rule.get("value", True)
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            value = value.lower() in ("true", "yes")
        if not isinstance(value, bool):
            problems.append(f"{where}: isReturningVisitor needs true or false, got {value!r}")
            return None
        if _operator(rule) == "notEqual":
            value = not value
        return {"returning_visitor": value}
    if kind == "device":
        return _clause("device", rule, where, problems, normalise=lambda v: v.lower())
    problems.append(
        f"{where}: rule type {kind!r} is not supported (Vary maps {', '.join(RULE_TYPES)})"
        if kind else f"{where}: a rule without a type"
    )
    return None


def _page_rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    count = rule.get("count")
    if _is_number(count) and count > 1:
        problems.append(f"{where}: a page rule counting {count:g} page views; Vary checks the page of "
                        "the current request only")
        return None
    if rule.get("when"):
        problems.append(f"{where}: 'when' conditions (time windows) are not supported")
        return None
    conditions = rule.get("conditions")
    if conditions is None:
        conditions = [rule] if rule.get("key") else []
    if not isinstance(conditions, list) or not conditions:
        problems.append(f"{where}: a page rule needs at least one condition on the URL, path, UTM, "
                        "query or referrer")
        return None
    clauses: list[dict[str, Any]] = []
    for i, condition in enumerate(conditions):
        here = f"{where}.conditions[{i}]" if condition is not rule else where
        if not isinstance(condition, dict):
            problems.append(f"{here}: expected a condition object")
            continue
        attribute = _page_attribute(condition)
        if attribute is None:
            problems.append(f"{here}: page condition key {condition.get('key')!r} is not one of url, "
                            "path, referrer, utm_campaign/source/medium/term/content, query.<name>")
            continue
        clause = _clause(attribute, condition, here, problems)
        if clause:
            clauses.append(clause)
    if len(clauses) != len(conditions):
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _page_attribute(condition: dict[str, Any]) -> str | None:
    key = _text(condition.get("key"))
    if key is None:
        return None
    name = _text(condition.get("name") or condition.get("parameter"))
    lowered = key.lower()
    if lowered == "url":
        return "page"
    if lowered == "path":
        return "page_path"
    if lowered == "referrer":
        return "referrer"
    for prefix in ("utm_", "utm."):
        if lowered.startswith(prefix) and lowered[len(prefix):] in _UTM:
            return f"utm.{lowered[len(prefix):]}"
    if lowered == "utm" and name and name.lower().removeprefix("utm_") in _UTM:
        return f"utm.{name.lower().removeprefix('utm_')}"
    if lowered.startswith("query.") and len(key) > 6:
        name = key[6:]
    elif lowered != "query":
        return None
    if not name or "." in name:
        return None
    return f"page_query.{name}"


def _track_rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    event = _text(rule.get("key") or rule.get("event"))
    if event is None:
        problems.append(f"{where}: a track rule needs the event's name")
        return None
    if "." in event:
        problems.append(f"{where}: event {event!r} has a dot, which a Vary goal name cannot address")
        return None
    if rule.get("conditions") or rule.get("when"):
        problems.append(f"{where}: conditions on the properties or time of event {event!r} are not "
                        "supported; Vary counts conversions per goal")
        return None
    count = rule.get("count", 1)
    if isinstance(count, str):
        count = _number(count)
    if not _is_number(count) or count < 0:
        problems.append(f"{where}: track count {rule.get('count')!r} is not a number of times")
        return None
    operator = _operator(rule) or "greaterThanInclusive"
    op = _RELATIONAL.get(operator)
    if op is None:
        problems.append(f"{where}: operator {operator!r} cannot compare an event count")
        return None
    return {f"profile.goals.{event}": {op: count}}


def _location_rule(rule: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    key = (_text(rule.get("key")) or "").lower()
    if key in ("country", "countrycode"):
        bad: list[object] = []

        def country(value: str) -> str:
            if len(value.strip()) != 2 or not value.strip().isalpha():
                bad.append(value)
            return value.strip().upper()

        clause = _clause("country", rule, where, problems, normalise=country)
        if bad:
            problems.append(f"{where}: {', '.join(map(repr, bad))} is not a two-letter country code "
                            "(ISO 3166, e.g. DE)")
            return None
        return clause
    if key == "continent":
        unknown: list[object] = []

        def continent(value: str) -> str:
            code = _CONTINENT_NAMES.get(value.strip().lower(), value.strip().upper())
            if code not in _CONTINENT_CODES:
                unknown.append(value)
            return code

        clause = _clause("continent", rule, where, problems, normalise=continent)
        if unknown:
            problems.append(f"{where}: {', '.join(map(repr, unknown))} is not a continent (use AF, AN, "
                            "AS, EU, NA, OC or SA)")
            return None
        return clause
    if key == "city":
        return _clause("city", rule, where, problems)
    if key in ("region", "regioncode"):
        return _clause("region", rule, where, problems)
    problems.append(f"{where}: location key {rule.get('key')!r} is not supported (country, continent, "
                    "city or region)")
    return None


def _clause(
    attribute: str,
    rule: dict[str, Any],
    where: str,
    problems: list[str],
    normalise: Callable[[str], str] | None = None,
) -> dict[str, Any] | None:
    operator = _operator(rule) or "equal"
    value = rule.get("value")
    if normalise is not None:
        if isinstance(value, str):
            value = normalise(value)
        elif isinstance(value, list):
            value = [normalise(v) if isinstance(v, str) else v for v in value]
    if operator in ("exists", "notExists"):
        return {attribute: {"$exists": operator == "exists"}}
    if operator in ("in", "notIn"):
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(v, (dict, list)) for v in values):
            problems.append(f"{where}: {operator} needs a list of values")
            return None
        return {attribute: {"$in" if operator == "in" else "$nin": values}}
    if value is None or isinstance(value, (dict, list)):
        problems.append(f"{where}: operator {operator!r} needs a single value, got {_kind(value)}")
        return None
    if operator in ("contains", "notContains", "startsWith", "endsWith"):
        escaped = re.escape(value if isinstance(value, str) else _js_text(value))
        pattern = {"startsWith": f"^{escaped}", "endsWith": f"{escaped}$"}.get(operator, escaped)
        if operator == "notContains":
            return {attribute: {"$not": {"$regex": pattern}}}
        return {attribute: {"$regex": pattern}}
    op = _RELATIONAL.get(operator)
    if op is None:
        problems.append(f"{where}: operator {operator!r} is not supported "
                        f"({', '.join(OPERATORS)})")
        return None
    if op in ("$gt", "$gte", "$lt", "$lte") and isinstance(value, str):
        number = _number(value)
        value = number if number is not None else value  # "10" > "9" compares as numbers
    return {attribute: {op: value}}


def _operator(rule: dict[str, Any]) -> str | None:
    operator = _text(rule.get("operator"))
    return _ALIASES.get(operator, operator) if operator else None


# -- audiences -------------------------------------------------------------------------------------


def _compile_audience(entry: ContentEntry, locale: str) -> tuple[Audience | None, list[ContentIssue]]:
    get = _settings(entry, locale)
    label = _label(entry, get)
    rules = get("nt_rules")
    if rules is None:
        return None, [_issue(entry, f"Audience {label} has no rules, so Vary cannot tell who is in it; "
                             "experiences using it are switched off.",
                             "Add rules to the audience in Contentful Personalization, or remove it "
                             "from its experiences.")]
    condition, problems = rules_condition(rules)
    if problems:
        return None, [_issue(entry, f"Audience {label} has rules Vary cannot map: {'; '.join(problems)}. "
                             "It is switched off, and so is every experience using it (they show the "
                             "baseline).",
                             "Change those rules to ones Vary supports (see the README, \"Coming from "
                             "Contentful Personalization\"), or use a native Vary audience.")]
    key = _text(get("nt_audience_id")) or entry.id
    name = _text(get("nt_name")) or key
    return Audience(id=entry.id, key=key, name=name, condition=condition), []


# -- experiences -----------------------------------------------------------------------------------


class _Component(Struct, frozen=True):
    baseline: str
    variants: tuple[str, ...]


class _ExperienceCompiler:
    """Compiles one nt_experience entry, collecting every problem so a marketer fixes all at once."""

    def __init__(
        self,
        entry: ContentEntry,
        locale: str,
        entries: dict[str, ContentEntry],
        audiences: dict[str, Audience],
        baselines: list[str],
    ) -> None:
        self.entry = entry
        self.get = _settings(entry, locale)
        self.label = _label(entry, self.get)
        self.entries = entries
        self.audiences = audiences
        self.baselines = baselines
        self.issues: list[ContentIssue] = []
        self._off = False

    def problem(self, problem: str, fix: str, *, switches_off: bool = True) -> None:
        if switches_off:
            problem += " It is switched off."
            self._off = True
        self.issues.append(_issue(self.entry, problem, fix))

    def compile(self, taken: set[str]) -> tuple[Experience, dict[str, Experience]] | None:
        key = self._key(taken)
        kind = self._type()
        config = self.get("nt_config")
        if not isinstance(config, dict):
            self.problem(f"Experience {self.label} has no configuration (nt_config), so Contentful "
                         "Personalization shows it to nobody.",
                         "Open the experience in Contentful Personalization and save its traffic, "
                         "distribution and variants.")
            return None
        components = self._components(config.get("components"))
        arms = 1 + max((len(c.variants) for c in components), default=0)
        traffic = self._traffic(config.get("traffic"))
        weights = self._weights(config.get("distribution"), kind, arms) if kind and components else None
        audience = self._audience()
        by_baseline = self._attach(components)
        if not self.baselines:
            self.problem(f"Experience {self.label} is not linked from any entry, so no visitor sees it.",
                         "Add it to the nt_experiences field of the entry it should change.",
                         switches_off=False)
        if self._off or key is None or kind is None or weights is None or not components:
            return None
        name = _text(self.get("nt_name")) or key

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
            )

        attached = {baseline_id: experience(c) for baseline_id, c in by_baseline.items()}
        first = next(iter(attached.values()), None) or experience(components[0])
        return first, attached

    def _key(self, taken: set[str]) -> str | None:
        key = _text(self.get("nt_experience_id")) or self.entry.id
        if len(key) > _MAX_KEY_LENGTH:
            self.problem(f"Experience {self.label} has an id longer than {_MAX_KEY_LENGTH} characters.",
                         "Give it a shorter nt_experience_id.")
            return None
        if key in taken:
            self.problem(f'Experience {self.label} has the key "{key}", which another experience '
                         "already uses.",
                         "Give this experience its own nt_experience_id; keys must be unique across "
                         "Vary and Contentful Personalization experiences.")
            return None
        taken.add(key)
        return key

    def _type(self) -> str | None:
        kind = self.get("nt_type")
        if kind in _TYPES:
            return _TYPES[kind]
        self.problem(f"Experience {self.label} has type {kind!r}; Vary runs nt_personalization and "
                     "nt_experiment.",
                     "Choose Personalization or Experiment as the experience's type.")
        return None

    def _components(self, raw: object) -> list[_Component]:
        if not isinstance(raw, list) or not raw:
            self.problem(f"Experience {self.label} has no components, so there is nothing to show "
                         "instead of the baseline.",
                         "Add a variant for the entry it should change.")
            return []
        components: list[_Component] = []
        for i, component in enumerate(raw):
            kind = component.get("type") if isinstance(component, dict) else None
            if kind == "InlineVariable":
                self.problem(f"Experience {self.label} has an inline variable "
                             f"({component.get('key')!r}); Vary does not support InlineVariable "
                             "components yet, so that component is ignored.",
                             "Model the change as an entry replacement (a variant entry), or read "
                             "the value in the front end.", switches_off=False)
                continue
            if not isinstance(component, dict) or kind not in (None, "EntryReplacement"):
                self.problem(f"Experience {self.label} has component {i + 1} of type {kind!r}, which "
                             "Vary does not know; it is ignored.",
                             "Use entry replacements (a baseline entry and its variants).",
                             switches_off=False)
                continue
            baseline = component.get("baseline")
            baseline_id = _text(baseline.get("id")) if isinstance(baseline, dict) else None
            variants = component.get("variants")
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
                variant_id = _text(variant.get("id")) if isinstance(variant, dict) else None
                target = self.entries.get(variant_id) if variant_id else None
                if target is None:
                    shown = f'"{variant_id}"' if variant_id else "an entry"
                    self.problem(f"Experience {self.label} has variant {shown} for "
                                 f'"{baseline_id}", which is not published or no longer exists.',
                                 "Publish that entry, or remove it from the experience's variants.")
                    continue
                ids.append(target.id)
            components.append(_Component(baseline_id, tuple(ids)))
        if raw and not components and not self._off:
            self.problem(f"Experience {self.label} has no entry replacement Vary can serve.",
                         "Add a variant entry for the entry it should change.")
        return components

    def _traffic(self, traffic: object) -> float:
        if traffic is None:
            self.problem(f"Experience {self.label} has no traffic share; like Contentful "
                         "Personalization, Vary lets nobody in (everyone sees the baseline).",
                         "Set the experience's traffic (1 = everyone in the audience).",
                         switches_off=False)
            return 0.0
        if not _is_number(traffic) or not 0 <= traffic <= 1:
            self.problem(f"Experience {self.label} has traffic {traffic!r}; it is a share between 0 "
                         "and 1 (0.5 = half the audience takes part).",
                         "Set a traffic share between 0 and 1.")
            return 0.0
        return float(traffic)

    def _weights(self, distribution: object, kind: str, arms: int) -> tuple[float, ...] | None:
        if distribution is None or distribution == []:
            if kind == "personalization" and arms > 1:
                return (0.0, *([1.0 / (arms - 1)] * (arms - 1)))
            return tuple([1.0 / arms] * arms)
        if not isinstance(distribution, list) or not all(_is_number(d) and d >= 0 for d in distribution):
            self.problem(f"Experience {self.label} has a distribution that is not a list of shares of 0 "
                         f"or more: {distribution!r}.",
                         "Set the distribution again in Contentful Personalization (baseline first).")
            return None
        total = math.fsum(distribution)
        if len(distribution) == arms and abs(total - 1.0) <= _TOLERANCE:
            return tuple(float(d) for d in distribution)
        # Shares laid end to end over [0, 1]; what is past 1, left over or for a missing arm → baseline.
        weights = [0.0] * arms
        remaining = 1.0
        for index, share in enumerate(distribution):
            taken = min(float(share), remaining) if remaining > _TOLERANCE else 0.0
            weights[index if index < arms else 0] += taken
            remaining -= taken
        if remaining > _TOLERANCE:
            weights[0] += remaining
        shown = ", ".join(f"{w:.4g}" for w in weights)
        self.problem(f"Experience {self.label} has a distribution of {len(distribution)} shares adding "
                     f"up to {total:g} for {arms} arms (the baseline and {arms - 1} variants); as "
                     f"Contentful Personalization would, Vary serves [{shown}] with the rest on the "
                     "baseline.",
                     "Set one share per arm, baseline first, adding up to 1.",
                     switches_off=False)
        return tuple(weights)

    def _audience(self) -> Audience | None:
        link = self.get("nt_audience")
        if link is None:
            return None
        target_id = link_id(link, "Entry")
        target = self.entries.get(target_id) if target_id else None
        if target is None or target.content_type != AUDIENCE_TYPE:
            shown = f'"{target_id}"' if target_id else repr(link)
            self.problem(f"Experience {self.label} links audience {shown}, which is not a published "
                         "Contentful Personalization audience.",
                         "Publish the audience, link another one, or clear the audience to show the "
                         "experience to everyone.")
            return None
        audience = self.audiences.get(target.id)
        if audience is None:
            self.problem(f"Experience {self.label} uses audience "
                         f"{_label(target, _settings(target, ''))}, which has a problem of its own.",
                         f'Fix the audience "{target.id}" first (see its issue).')
        return audience

    def _attach(self, components: list[_Component]) -> dict[str, _Component]:
        by_baseline: dict[str, _Component] = {}
        for component in components:
            by_baseline.setdefault(component.baseline, component)
        attached: dict[str, _Component] = {}
        for baseline_id in self.baselines:
            component = by_baseline.get(baseline_id)
            if component is None:
                baseline = self.entries[baseline_id]
                self.issues.append(_issue(
                    baseline,
                    f"Entry {_label(baseline, _settings(baseline, ''))} links experience {self.label}, "
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


# -- helpers ---------------------------------------------------------------------------------------


def _of_type(entries: dict[str, ContentEntry], content_type: str) -> list[ContentEntry]:
    return sorted((e for e in entries.values() if e.content_type == content_type), key=lambda e: e.id)


def _linked(entries: dict[str, ContentEntry], locale: str, issues: list[ContentIssue]) -> dict[str, list[str]]:
    """Baseline id → the nt_experience ids it links, in order; reports links that lead nowhere."""
    linked: dict[str, list[str]] = {}
    for entry in sorted(entries.values(), key=lambda e: e.id):
        links = entry.fields.get(locale, {}).get(NT_EXPERIENCES_FIELD)
        if not isinstance(links, list) or not links:
            continue
        label = _label(entry, _settings(entry, locale))
        ids: list[str] = []
        for target_id in dict.fromkeys(t for t in (link_id(link, "Entry") for link in links) if t):
            target = entries.get(target_id)
            if target is None:
                issues.append(_issue(entry, f'Entry {label} links experience "{target_id}", which is not '
                                     "published or no longer exists; it is ignored.",
                                     "Publish that experience, or remove it from the entry's "
                                     "nt_experiences."))
            elif target.content_type != EXPERIENCE_TYPE:
                issues.append(_issue(entry, f'Entry {label} links "{target_id}" ({target.content_type}) in '
                                     "its nt_experiences, but that is not a Contentful Personalization "
                                     "experience; it is ignored.",
                                     "Remove it; only nt_experience entries belong in that field."))
            else:
                ids.append(target_id)
        if ids:
            linked[entry.id] = ids
    return linked


def _settings(entry: ContentEntry, locale: str) -> Callable[[str], Any]:
    """The app's fields are not localized: the default locale's value (any locale as a fallback)."""
    values = entry.fields.get(locale)
    if values is None:
        values = next(iter(entry.fields.values()), {})
    return values.get


def _label(entry: ContentEntry, get: Callable[[str], Any]) -> str:
    for field in ("nt_name", "name", "title", "text", "internalName"):
        value = get(field)
        if isinstance(value, str) and value.strip():
            return f'"{value.strip()}"'
    return f'"{entry.id}"'


def _issue(entry: ContentEntry, problem: str, fix: str) -> ContentIssue:
    return ContentIssue(entry_id=entry.id, content_type=entry.content_type, problem=problem, fix=fix)


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: str) -> float | int | None:
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() else number


def _js_text(value: object) -> str:
    """A scalar as JavaScript's ``String()`` writes it (what the evaluator matches against)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(type(value), "a number")
