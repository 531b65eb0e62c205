"""Real Contentful Personalization spaces (tests/fixtures/ninetailed/, published by Contentful, MIT):
every audience rule as the audience builder writes it is translated, every experience is on, and each
experience serves what Contentful Personalization would for visitors built from its own audiences.

What "would serve" means comes from two places. Audience membership: Ninetailed evaluates rules on its
servers (its SDK only reads ``profile.audiences``), so :data:`MEMBERSHIP` states by hand, rule by rule,
which audiences each visitor is in — written from the exports' rules and Contentful's rule-builder docs
(contentful.com/help/personalization/audiences/rule-types, docs.ninetailed.io/create/audiences/conditions),
independently of Vary's translation. Selection: Ninetailed's SDK (github.com/ninetailed-inc/experience.js,
MIT, commit d3a215e5b46b36b098d4e4ca5ea64868f5021ae9), re-stated in :func:`ninetailed_serves`:
``packages/sdks/shared/src/lib/utils/experiences/selectExperience.ts`` (the first experience in the
entry's ``nt_experiences`` order that matches), ``isExperienceMatch.ts`` (traffic and
``profile.audiences.includes(audience.id)``), ``selectVariant.ts`` / ``selectDistribution.ts`` (the
distribution's index; index 0 or a missing variant: the baseline; a hidden variant renders nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from content import ContentSnapshot
from content.experiences.ninetailed import HIDDEN_VARIANT
from content.experiences.ninetailed_rules import rules_condition
from personalization.decision.audience_validate import validate_condition
from personalization.decision.audiences import eval_condition
from personalization.decision.context import audience_attributes
from personalization.decision.selection import select_experience
from personalization.types import Profile, Visitor
from tests.content.spaces import compile_export

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ninetailed"
SPACES = ("marketing-contentful-next.json", "marketing-contentful-next-app.json")

ALL, NA, EU, ANZ = "64ducOq8OgG6N0zK3SuRnq", "6jlfnsz75fz0oE0mPj982O", "51AL1dMNXkvx1BkQd3wPR1", "6vB7TWcw1N8DLCj6Kio4OL"
OPPORTUNITY, ENTERPRISE, PRICING = "9dD2bUqMKGEu5piomilr7", "4IBSwLRvM1gdBidtnsh4h", "7IRVaTD9GpZVprP7A8tSiE"
APPLICANT, SEGMENT, PROCESS, NEW = "dlEFnUIcMrAfKqalqu3DP", "1mLOjh6K55nVpsuQ9y70Ou", "1izx9ylITQURQPVjjLVMlc", "1g2FXnBQzxcQfhnaM2NRkn"
HOME = "https://example.com/"
RETURNING = Profile(visits=3, page_views=5)

#: name → (visitor, profile, {space: the audiences Ninetailed's rules put it in}). "All Visitors" is
#: "has viewed a page (URL: any value) or has performed any event"; both spaces agree except where noted
#: (marketing-contentful-next-app's Enterprise Lead reads "1001-2000" and is_vegetarian "true").
VISITORS: dict[str, tuple[Visitor, Profile, dict[str, set[str]]]] = {
    "new in the US": (Visitor(id="a", country="US", page=HOME), Profile(), {"*": {ALL, NA, NEW}}),
    "returning in Germany": (Visitor(id="b", country="de", page=HOME + "about"), RETURNING, {"*": {ALL, EU}}),
    "returning in Australia": (Visitor(id="n", country="AU", page=HOME), RETURNING, {"*": {ALL, ANZ}}),
    "on the pricing page in Australia": (
        Visitor(id="c", country="AU", page=HOME + "pricing"), RETURNING, {"*": {ALL, ANZ, PRICING}}),
    "from the applicant-tracking campaign in New Zealand": (
        Visitor(id="d", country="NZ", page=HOME + "?utm_campaign=applicant_tracking",
                utm={"campaign": "applicant_tracking"}), RETURNING, {"*": {ALL, ANZ, APPLICANT}}),
    "an opportunity in Japan": (
        Visitor(id="e", country="JP", page=HOME, traits={"lifecyclestage": "opportunity"}), RETURNING,
        {"*": {ALL, OPPORTUNITY}}),
    "a large company in Brazil": (
        Visitor(id="f", country="BR", page=HOME, traits={"companysize": "more_than_2000"}), RETURNING,
        {"*": {ALL, ENTERPRISE}}),
    "a 1000-2000 company in Brazil": (
        Visitor(id="g", country="BR", page=HOME, traits={"companysize": "1000-2000"}), RETURNING,
        {"marketing-contentful-next.json": {ALL, ENTERPRISE}, "marketing-contentful-next-app.json": {ALL}}),
    "a vegetarian in Brazil": (
        Visitor(id="h", country="BR", page=HOME, traits={"is_vegetarian": True}), RETURNING,
        {"marketing-contentful-next.json": {ALL}, "marketing-contentful-next-app.json": {ALL, ENTERPRISE}}),
    "a Segment user in the UK": (
        Visitor(id="i", country="GB", page=HOME, traits={"last_email_opened_subject_line": "Hi",
                                                         "most_frequent_product_feature_viewed": "Reports"}),
        RETURNING, {"*": {ALL, EU, SEGMENT}}),
    "one Segment trait only, in China": (
        Visitor(id="j", country="CN", page=HOME, traits={"last_email_opened_subject_line": "Hi"}), RETURNING,
        {"*": {ALL}}),
    "a Process Management buyer in India": (
        Visitor(id="k", country="IN", page=HOME, traits={"purchased_product_features": "Workflows, Process Management"}),
        RETURNING, {"*": {ALL, PROCESS}}),
    "an app visitor with an event and no page": (
        Visitor(id="l", country="CN"), Profile(visits=1, conversions=1, goals={"signup": 1}), {"*": {ALL}}),
    "no page and no event": (Visitor(id="m", country="CN"), Profile(visits=1), {"*": set()}),
}


def load(name: str) -> tuple[dict[str, Any], ContentSnapshot]:
    export = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return export, compile_export(export)


def membership(name: str, space: str) -> set[str]:
    expected = VISITORS[name][2]
    return expected.get(space, expected.get("*", set()))


def ninetailed_serves(export: dict[str, Any], entry_id: str, audiences: set[str]) -> set[str]:
    """What Ninetailed's SDK serves for this baseline entry to a profile in ``audiences``: one entry id
    (or ``""`` for a hidden variant), or the set of arms an experiment may bucket the visitor into."""
    by_id = {e["sys"]["id"]: e for e in export["entries"]}
    for link in by_id[entry_id]["fields"]["nt_experiences"]["en-US"]:
        fields = {k: v["en-US"] for k, v in by_id[link["sys"]["id"]]["fields"].items()}
        config, audience = fields["nt_config"], fields.get("nt_audience")
        if config.get("traffic", 0) <= 0 or (audience and audience["sys"]["id"] not in audiences):
            continue  # isExperienceMatch: traffic and audience
        component = next((c for c in config["components"] if c["baseline"]["id"] == entry_id), None)
        if component is None:
            return {entry_id}  # selectBaselineWithVariants: no component for this entry
        arms = [entry_id] + [HIDDEN_VARIANT if v.get("hidden") else v["id"] for v in component["variants"]]
        reachable = {i for i, share in enumerate(config["distribution"]) if share > 0}
        return {arms[i] if i < len(arms) else entry_id for i in reachable}  # selectVariant
    return {entry_id}


def vary_serves(snapshot: ContentSnapshot, entry_id: str, visitor: Visitor, profile: Profile) -> str:
    assignment = select_experience(
        snapshot.experiences_for(entry_id), audience_attributes(visitor, profile, {}), visitor.id, {}, now=0.0
    )
    if assignment.experience is None or assignment.variant == 0:
        return entry_id
    return assignment.experience.variants[assignment.variant - 1]


@pytest.mark.parametrize("space", SPACES)
def test_real_export_loads_with_every_experience_on(space: str) -> None:
    export, snapshot = load(space)
    assert snapshot.issues == ()
    experiences = {e["sys"]["id"] for e in export["entries"] if e["sys"]["contentType"]["sys"]["id"] == "nt_experience"}
    assert set(snapshot.experiences) == experiences and len(experiences) >= 13
    audiences = {e["sys"]["id"] for e in export["entries"] if e["sys"]["contentType"]["sys"]["id"] == "nt_audience"}
    used = {x.audience.id for x in snapshot.experiences.values() if x.audience is not None}
    assert used <= audiences and len(used) >= 9


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("name", list(VISITORS))
def test_audiences_match_ninetailed_membership(space: str, name: str) -> None:
    _, snapshot = load(space)
    visitor, profile, _ = VISITORS[name]
    attributes = audience_attributes(visitor, profile, {})
    audiences = {x.audience.id: x.audience for x in snapshot.experiences.values() if x.audience is not None}
    matched = {aid for aid, audience in audiences.items() if eval_condition(attributes, audience.condition)}
    assert matched == membership(name, space) & set(audiences)


@pytest.mark.parametrize("space", SPACES)
def test_each_experience_serves_what_ninetailed_would(space: str) -> None:
    export, snapshot = load(space)
    baselines = [e["sys"]["id"] for e in export["entries"] if e["fields"].get("nt_experiences", {}).get("en-US")]
    served_experiences: set[str] = set()
    for entry_id in baselines:
        for name, (visitor, profile, _) in VISITORS.items():
            expected = ninetailed_serves(export, entry_id, membership(name, space))
            assert vary_serves(snapshot, entry_id, visitor, profile) in expected, (entry_id, name)
            for experience in snapshot.experiences_for(entry_id):
                if experience.audience is None or experience.audience.id in membership(name, space):
                    served_experiences.add(experience.key)
                    break
    assert served_experiences == set(snapshot.experiences)  # every experience was reached by some visitor


@pytest.mark.parametrize("space", SPACES)
def test_experiments_split_their_audience_as_distributed(space: str) -> None:
    _, snapshot = load(space)
    hero_test = snapshot.experiences["4aSQ6HYCrSQP2UktnEGq3X"]  # Alternate Hero Layout: 50/50, All Visitors
    (entry_id,) = snapshot.baselines()[hero_test.key]
    served = [vary_serves(snapshot, entry_id, Visitor(id=f"visitor-{i}", page=HOME), RETURNING) for i in range(2000)]
    share = served.count(hero_test.variants[0]) / len(served)
    assert 0.46 < share < 0.54  # binomial(2000, 0.5): sd 0.011, so ±0.04 is 3.6 sd


# -- the builder's rule forms, one by one ---------------------------------------------------------


def url_key(ident: str, category: str, value: str = "") -> dict[str, Any]:
    """A where-condition key as the builder writes it (ninetailed-examples exports)."""
    return {"id": ident, "key": ident, "label": category, "value": value, "useOnce": True,
            "category": {"name": category, "type": "string", "label": category}}


def page(*conditions: dict[str, Any], count: object = "1", operator: str = "greaterThanInclusive") -> dict[str, Any]:
    return {"key": "", "type": "page", "count": count, "value": "", "operator": operator, "conditions": list(conditions)}


def where(key: dict[str, Any], operator: str, value: str) -> dict[str, Any]:
    return {"key": key, "operator": operator, "value": value}


@pytest.mark.parametrize(
    ("rule", "condition"),
    [
        (page(where(url_key("context_page_url", "url"), "contains", "pricing")),
         {"$or": [{"page": {"$regex": "pricing"}},
                  {"history.views.url~has~pricing.count": {"$gte": 1}}]}),
        (page(where(url_key("context_page_path", "path"), "equal", "/demo")),
         {"$or": [{"page_path": {"$eq": "/demo"}},
                  {"history.views.path~eq~%2Fdemo.count": {"$gte": 1}}]}),
        # page history: N times, "fewer than" (holds for a visitor who never viewed it), and windows
        (page(where(url_key("context_page_path", "path"), "contains", "pricing"), count="2"),
         {"history.views.path~has~pricing.count": {"$gte": 2}}),
        (page(where(url_key("context_page_url", "url"), "contains", "x"), count="1", operator="lessThan"),
         {"history.views.url~has~x.count": {"$lt": 1}}),
        ({**page(where(url_key("context_page_path", "path"), "equal", "/pricing"), count="3"),
          "when": {"operator": "inTheLast", "value": 7, "unit": "days"}},
         {"history.views.path~eq~%2Fpricing.within.7d": {"$gte": 3}}),
        ({**page(where(url_key("context_page_url", "url"), "equal", "*"), count="5"), "when": {"hours": 12}},
         {"history.any_page.within.12h": {"$gte": 5}}),
        (page(where(url_key("context_page_referrer", "referrer"), "equal", "tiktok.com")),
         {"referrer": {"$eq": "tiktok.com"}}),
        (page(where(url_key("context_page_query", "query_parameter", "social"), "equal", "tiktok")),
         {"page_query.social": {"$eq": "tiktok"}}),
        (page(where(url_key("context_campaign_name", "utm_parameter", "context_campaign_name"), "equal", "x")),
         {"utm.campaign": {"$eq": "x"}}),
        (page(where(url_key("context_campaign_source", "utm_parameter"), "startsWith", "goo")),
         {"utm.source": {"$regex": "^goo"}}),
        (page(where(url_key("context_campaign_medium", "utm_parameter"), "notEqual", "*")),
         {"utm.medium": {"$exists": False}}),
        (page(where(url_key("context_page_url", "url"), "equal", "*"), count="3"),
         {"profile.page_views": {"$gte": 3}}),
        (page(where(url_key("context_page_url", "url"), "equal", "*")),
         {"$or": [{"page": {"$exists": True}}, {"profile.page_views": {"$gte": 1}}]}),
        ({"key": "", "type": "track", "count": "1", "value": "registered", "operator": "greaterThanInclusive"},
         {"profile.goals.registered": {"$gte": 1}}),
        ({"type": "track", "count": "2", "key": "", "operator": "greaterThan", "value": "*", "conditions": []},
         {"profile.conversions": {"$gt": 2}}),
        ({"type": "track", "count": "2", "key": "", "value": "signup", "operator": "greaterThanInclusive",
          "when": {"operator": "inTheLast", "value": 1, "unit": "weeks"}},
         {"history.events.signup.within.7d": {"$gte": 2}}),
        ({"type": "track", "count": "3", "key": "", "value": "*", "operator": "lessThan", "when": "30 days"},
         {"$or": [{"history.any_event.within.30d": {"$exists": False}}, {"history.any_event.within.30d": {"$lt": 3}}]}),
        ({"key": "ownername", "type": "identify", "count": 1, "value": "*", "operator": "contains", "conditions": []},
         {"traits.ownername": {"$exists": True}}),
        ({"key": "is_vegetarian", "type": "identify", "count": "1", "value": "true", "operator": "equal"},
         {"traits.is_vegetarian": {"$in": ["true", True]}}),
        ({"type": "location", "count": "1", "key": "city", "operator": "equal", "value": "Madrid", "conditions": []},
         {"city": {"$eq": "Madrid"}}),
        ({"type": "location", "key": "countryCode", "operator": "equal", "value": "*"}, {"country": {"$exists": True}}),
        ({"type": "isReturningVisitor", "count": "1", "key": "", "operator": "equal", "value": False, "conditions": []},
         {"returning_visitor": False}),
    ],
)
def test_builder_rule_forms(rule: dict[str, Any], condition: dict[str, Any]) -> None:
    mapped, problems = rules_condition({"any": [{"all": [rule]}]}, validate_condition)
    assert problems == [] and mapped == condition


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (page(where(url_key("context_campaign_source", "utm_parameter"), "equal", "x"), count="2"),
         "rules.any[0].all[0]: a page rule counting views ($gte 2) can only read the URL"),
        ({**page(where(url_key("context_page_path", "path"), "equal", "/a"), count="11"), "when": {"days": 7}},
         "$gte 11 page views within 7d: Vary keeps the last 10 views of each page"),
        ({"type": "track", "value": "buy", "count": "20", "operator": "greaterThan", "when": 7},
         "$gt 20 events within 7d"),
        ({"type": "track", "value": "buy", "when": {"operator": "moreThan", "value": 7}}, "'when' operator 'moreThan'"),
        ({"type": "track", "value": "buy", "when": {"value": 7, "unit": "fortnights"}}, "is not a time window"),
        (page(where(url_key("context_page_url", "url"), "equal", "")),
         "rules.any[0].all[0].conditions[0]: the condition on 'context_page_url' has no value"),
        (page(where(url_key("context_page_hash", "hash"), "equal", "x")), "page condition key 'context_page_hash'"),
        ({"type": "track", "key": "", "value": "buy", "count": "1", "conditions": [{"key": "price"}]},
         "conditions on the properties of event 'buy' are not supported"),
        ({"type": "track", "value": "*", "count": "often"}, "count 'often' is not a number of times"),
    ],
)
def test_builder_rules_vary_cannot_map_name_their_path(rule: dict[str, Any], problem: str) -> None:
    _, problems = rules_condition({"any": [{"all": [rule]}]}, validate_condition)
    assert any(problem in p for p in problems), problems


def test_any_value_is_not_the_literal_star() -> None:
    condition, _ = rules_condition({"any": [{"all": [
        {"type": "identify", "key": "plan", "operator": "equal", "value": "*"}]}]}, validate_condition)
    with_plan = audience_attributes(Visitor(id="v", traits={"plan": "free"}), Profile(), {})
    without = audience_attributes(Visitor(id="v", traits={"other": "*"}), Profile(), {})
    assert eval_condition(with_plan, condition) and not eval_condition(without, condition)
