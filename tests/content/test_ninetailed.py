"""Spaces modelled for Contentful Personalization (Ninetailed): the bundled second demo compiled as
modelled, audience rules translated into GrowthBook conditions over Vary's attributes, merge tags
filled per visitor, what cannot be mapped reported with the entry id, and both models in one space."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

import content
from content import ContentSnapshot
from content.mergetags import selectors_for
from content.experiences.ninetailed import HIDDEN_VARIANT, compile_ninetailed
from content.experiences.ninetailed_rules import rules_condition
from content.sources import items_from_export
from personalization.decision.audience_validate import validate_condition
from personalization.decision.audiences import eval_condition
from personalization.decision.context import audience_attributes, continent_of, merge_values
from personalization.decision.selection import select_experience
from personalization.types import Audience, Consent, Profile, Visitor
from tests.content.spaces import add_entry, compile_export, entry, link, set_field

Export = dict[str, Any]
NT_DEMO = Path(content.__file__).parent / "demo" / "ninetailed.json"
NT_KEYS = {"ntExpEurope", "ntExpProPlan", "ntExpNewVisitors", "ntExpPromoTest", "ntExpSpringCampaign"}


@pytest.fixture
def nt_export() -> Export:
    return json.loads(NT_DEMO.read_text(encoding="utf-8"))


@pytest.fixture
def nt(nt_export: Export) -> ContentSnapshot:
    return compile_export(nt_export)


def fields(snapshot: ContentSnapshot, entry_id: str, values: dict[str, str] | None = None) -> Any:
    return msgspec.json.decode(snapshot.fields(entry_id, None, values))


def greeting_text(fields_: dict[str, Any]) -> str:
    paragraph = fields_["greeting"]["content"][0]
    return "".join(node["value"] for node in paragraph["content"])


def problems_of(snapshot: ContentSnapshot, entry_id: str) -> list[str]:
    return [issue.problem for issue in snapshot.issues if issue.entry_id == entry_id]


def attributes(**visitor: Any) -> dict[str, Any]:
    profile = visitor.pop("profile", Profile())
    return audience_attributes(Visitor(id="v", **visitor), profile, {})


# -- the second demo space -----------------------------------------------------------------------


def test_second_demo_compiles_as_modelled(nt: ContentSnapshot) -> None:
    assert nt.issues == ()
    assert set(nt.experiences) == NT_KEYS
    assert [e.key for e in nt.experiences_for("heroHome")] == ["ntExpEurope", "ntExpProPlan", "ntExpNewVisitors"]
    assert [e.key for e in nt.experiences_for("bannerPromo")] == ["ntExpPromoTest"]
    assert [e.key for e in nt.experiences_for("bannerGarden")] == ["ntExpSpringCampaign"]
    assert nt.experiences_for("heroHomeEurope") == ()

    europe = nt.experiences["ntExpEurope"]
    assert europe.id == "ntExpEurope" and europe.name == "Hero: free delivery in Europe"
    assert europe.type == "personalization"
    assert europe.variants == ("heroHomeEurope",)
    assert europe.weights == (0.0, 1.0) and europe.traffic_allocation == 1.0 and europe.holdout == 0.0
    assert europe.content_type == "ntHero"
    assert europe.audience == Audience(
        id="ntAudEurope", key="ntAudEurope", name="Visitors in Europe", condition={"continent": {"$eq": "EU"}}
    )
    assert nt.experiences["ntExpProPlan"].audience.condition == {"traits.plan": {"$eq": "pro"}}  # type: ignore[union-attr]
    assert nt.experiences["ntExpNewVisitors"].audience.condition == {"returning_visitor": False}  # type: ignore[union-attr]
    assert nt.experiences["ntExpSpringCampaign"].audience.condition == {  # type: ignore[union-attr]
        "$or": [
            {"utm.campaign": {"$eq": "spring"}},
            {"$or": [{"page_path": {"$regex": "^/garden"}},
                     {"history.views.path~pre~%2Fgarden.count": {"$gte": 1}}]},
        ]
    }
    assert set(nt.audiences) == {"ntAudEurope", "ntAudProPlan", "ntAudNewVisitors", "ntAudSpringCampaign"}


def test_ab_test_with_a_hidden_variant(nt: ContentSnapshot) -> None:
    promo = nt.experiences["ntExpPromoTest"]
    assert promo.type == "ab_test" and promo.audience is None
    assert promo.variants == ("bannerPromoShort", HIDDEN_VARIANT)
    assert promo.weights == (0.34, 0.33, 0.33)
    assert HIDDEN_VARIANT == ""


def test_wiring_fields_are_not_served(nt: ContentSnapshot) -> None:
    hero = fields(nt, "heroHome")
    assert "nt_experiences" not in hero and hero["title"].startswith("Furniture")
    assert "nt_experiences" not in fields(nt, "bannerPromo")


def test_attachments_list_keys_in_nt_experiences_order(nt_export: Export) -> None:
    compiled = compile_ninetailed(items_from_export(nt_export), "en-US", validate_condition=validate_condition)
    assert compiled.attachments == {
        "heroHome": ["ntExpEurope", "ntExpProPlan", "ntExpNewVisitors"],
        "bannerPromo": ["ntExpPromoTest"],
        "bannerGarden": ["ntExpSpringCampaign"],
    }


def test_selection_by_continent_trait_and_new_visitor(nt: ContentSnapshot) -> None:
    hero = nt.experiences_for("heroHome")
    returning = Profile(visits=2)

    def chosen(**visitor: Any) -> str | None:
        assignment = select_experience(hero, attributes(**visitor), "visitor-1", {}, now=0.0)
        return assignment.experience.key if assignment.experience else None

    assert chosen(country="DE", profile=returning) == "ntExpEurope"
    assert chosen(country="FR", profile=returning) == "ntExpEurope"
    assert chosen(country="US", profile=returning) is None
    assert chosen(country="US", traits={"plan": "pro"}, profile=returning) == "ntExpProPlan"
    assert chosen(country="US", traits={"plan": "free"}, profile=returning) is None
    assert chosen(country="US") == "ntExpNewVisitors"
    assert chosen(country="DE") == "ntExpEurope"  # new too, but Europe comes first in nt_experiences


# -- merge tags -------------------------------------------------------------------------------------


def test_merge_tag_filled_from_the_visitor_or_its_fallback(nt: ContentSnapshot) -> None:
    assert nt.has_merge_tags
    assert greeting_text(fields(nt, "heroHome")) == "Hi there, good to see you."
    assert greeting_text(fields(nt, "heroHome", {})) == "Hi there, good to see you."
    assert greeting_text(fields(nt, "heroHome", {"traits.firstname": "Ada"})) == "Hi Ada, good to see you."
    tricky = 'Zoë "Z" <b>\\'
    assert greeting_text(fields(nt, "heroHome", {"traits.firstname": tricky})) == f"Hi {tricky}, good to see you."
    node = fields(nt, "heroHome")["greeting"]["content"][0]["content"][1]
    assert node == {"nodeType": "text", "value": "there", "marks": [], "data": {"nt_mergetag_id": "traits.firstname"}}


def test_entries_without_merge_tags_keep_the_pre_encoded_fields(nt: ContentSnapshot) -> None:
    assert nt.fields("bannerPromo", None, {"traits.firstname": "Ada"}) is nt.fields("bannerPromo")


def test_merge_tag_in_a_linked_entry_and_ninetailed_underscore_ids(nt_export: Export) -> None:
    set_field(nt_export, "mergeTagFirstName", "nt_mergetag_id", "traits_first_name")
    add_entry(nt_export, "homePage", "ntBanner", {"text": "Home", "hero": link("heroHome")})
    snapshot = compile_export(nt_export)
    assert selectors_for("traits_first_name") == ("traits_first_name", "traits.first_name", "traits.first.name")
    hero = fields(snapshot, "homePage", {"traits.first_name": "Grace"})["hero"]["fields"]
    assert greeting_text(hero) == "Hi Grace, good to see you."
    assert greeting_text(fields(snapshot, "homePage")["hero"]["fields"]) == "Hi there, good to see you."


def test_merge_values_of_a_visitor() -> None:
    visitor = Visitor(id="v", country="de", traits={"firstname": "Ada", "visits": 3.0, "pro": True, "city": "Berlin",
                                                     "nothing": None})
    assert merge_values(visitor) == {
        "traits.firstname": "Ada", "traits.visits": "3", "traits.pro": "true", "traits.city": "Berlin",
        "location.countryCode": "DE", "location.continent": "EU", "location.city": "Berlin",
    }
    assert merge_values(Visitor(id="v", traits={"firstname": "Ada"}, consent=Consent(personalization=False))) == {}
    assert continent_of("jp") == "AS" and continent_of("BR") == "SA" and continent_of("ZZ") is None


# -- rules → conditions -----------------------------------------------------------------------------


def one(rule: dict[str, Any]) -> dict[str, Any]:
    condition, problems = rules_condition({"any": [{"all": [rule]}]}, validate_condition)
    assert problems == []
    return condition


@pytest.mark.parametrize(
    ("rule", "condition"),
    [
        ({"type": "identify", "key": "plan", "operator": "equal", "value": "pro"}, {"traits.plan": {"$eq": "pro"}}),
        ({"type": "identify", "key": "traits.plan", "operator": "notEqual", "value": "pro"},
         {"traits.plan": {"$ne": "pro"}}),
        # contains on a trait: substring on text, membership on a list (CDPs send list traits)
        ({"type": "identify", "key": "email", "operator": "contains", "value": "@acme.com"},
         {"$or": [{"traits.email": {"$not": {"$type": "array"}, "$regex": "@acme\\.com"}},
                  {"traits.email": {"$elemMatch": {"$in": ["@acme.com"]}}}]}),
        ({"type": "identify", "key": "email", "operator": "notContains", "value": "+"},
         {"$not": {"$or": [{"traits.email": {"$not": {"$type": "array"}, "$regex": "\\+"}},
                           {"traits.email": {"$elemMatch": {"$in": ["+"]}}}]}}),
        ({"type": "identify", "key": "name", "operator": "startsWith", "value": "Dr."},
         {"traits.name": {"$regex": "^Dr\\."}}),
        ({"type": "identify", "key": "email", "operator": "endsWith", "value": ".de"},
         {"traits.email": {"$regex": "\\.de$"}}),
        ({"type": "identify", "key": "orders", "operator": "greaterThan", "value": "2"}, {"traits.orders": {"$gt": 2}}),
        ({"type": "identify", "key": "orders", "operator": "greaterThanInclusive", "value": 3},
         {"traits.orders": {"$gte": 3}}),
        ({"type": "identify", "key": "age", "operator": "lessThan", "value": 30}, {"traits.age": {"$lt": 30}}),
        ({"type": "identify", "key": "age", "operator": "lessThanInclusive", "value": "29.5"},
         {"traits.age": {"$lte": 29.5}}),
        ({"type": "identify", "key": "plan", "operator": "in", "value": ["pro", "team"]},
         {"traits.plan": {"$in": ["pro", "team"]}}),
        ({"type": "identify", "key": "plan", "operator": "notIn", "value": ["free"]}, {"traits.plan": {"$nin": ["free"]}}),
        ({"type": "identify", "key": "company", "operator": "exists"}, {"traits.company": {"$exists": True}}),
        ({"type": "identify", "key": "company", "operator": "notExists"}, {"traits.company": {"$exists": False}}),
        ({"type": "location", "key": "continent", "operator": "equal", "value": "Europe"}, {"continent": {"$eq": "EU"}}),
        ({"type": "location", "key": "countryCode", "operator": "in", "value": ["de", "AT"]},
         {"country": {"$in": ["DE", "AT"]}}),
        ({"type": "location", "key": "city", "operator": "equal", "value": "Berlin"}, {"city": {"$eq": "Berlin"}}),
        ({"type": "location", "key": "region", "operator": "equal", "value": "BY"}, {"region": {"$eq": "BY"}}),
        ({"type": "isReturningVisitor", "value": True}, {"returning_visitor": True}),
        ({"type": "isReturningVisitor", "value": False}, {"returning_visitor": False}),
        ({"type": "track", "key": "signup"}, {"profile.goals.signup": {"$gte": 1}}),
        ({"type": "track", "key": "purchase", "count": 3}, {"profile.goals.purchase": {"$gte": 3}}),
        ({"type": "track", "key": "purchase", "count": 1, "operator": "lessThan"}, {"profile.goals.purchase": {"$lt": 1}}),
        ({"type": "page", "conditions": [{"key": "url", "operator": "contains", "value": "/pricing"}]},
         {"$or": [{"page": {"$regex": "/pricing"}},
                  {"history.views.url~has~%2Fpricing.count": {"$gte": 1}}]}),
        ({"type": "page", "conditions": [{"key": "path", "operator": "equal", "value": "/pricing"}]},
         {"$or": [{"page_path": {"$eq": "/pricing"}},
                  {"history.views.path~eq~%2Fpricing.count": {"$gte": 1}}]}),
        ({"type": "page", "conditions": [{"key": "utm_source", "operator": "equal", "value": "google"},
                                         {"key": "referrer", "operator": "contains", "value": "google."}]},
         {"$and": [{"utm.source": {"$eq": "google"}}, {"referrer": {"$regex": "google\\."}}]}),
        ({"type": "page", "conditions": [{"key": "query", "name": "ref", "operator": "equal", "value": "ad"}]},
         {"page_query.ref": {"$eq": "ad"}}),
        ({"type": "page", "key": "query.ref", "operator": "equal", "value": "ad"}, {"page_query.ref": {"$eq": "ad"}}),
        ({"type": "device", "operator": "equal", "value": "Mobile"}, {"device": {"$eq": "mobile"}}),
    ],
)
def test_rule_translation(rule: dict[str, Any], condition: dict[str, Any]) -> None:
    assert one(rule) == condition


def test_any_all_become_or_and() -> None:
    a = {"type": "identify", "key": "a", "operator": "equal", "value": "1"}
    b = {"type": "identify", "key": "b", "operator": "equal", "value": "2"}
    c = {"type": "isReturningVisitor", "value": True}
    condition, problems = rules_condition({"any": [{"all": [a, b]}, {"all": [c]}]}, validate_condition)
    assert problems == []
    assert condition == {"$or": [{"$and": [{"traits.a": {"$eq": "1"}}, {"traits.b": {"$eq": "2"}}]},
                                 {"returning_visitor": True}]}


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        ({"any": [{"all": [{"type": "session", "value": 3}]}]}, "rule type 'session' is not supported"),
        ({"any": [{"all": [{"type": "identify", "key": "plan", "operator": "fuzzy", "value": "x"}]}]},
         "operator 'fuzzy' is not supported"),
        ({"any": [{"all": [{"type": "page", "count": 3, "conditions": [
            {"key": "utm_source", "operator": "equal", "value": "/a"}]}]}]}, "counting views ($gte 3)"),
        ({"any": [{"all": [{"type": "page", "conditions": [{"key": "hash", "operator": "equal", "value": "x"}]}]}]},
         "page condition key 'hash'"),
        ({"any": [{"all": [{"type": "track", "key": "buy", "conditions": [{"key": "value"}]}]}]},
         "conditions on the properties of event 'buy' are not supported"),
        ({"any": [{"all": [{"type": "location", "key": "country", "operator": "equal", "value": "Germany"}]}]},
         "'Germany' is not a two-letter country code"),
        ({"any": [{"all": [{"type": "location", "key": "continent", "operator": "equal", "value": "Atlantis"}]}]},
         "'Atlantis' is not a continent"),
        ({"any": [{"all": [{"type": "location", "key": "postalCode", "operator": "equal", "value": "10115"}]}]},
         "location key 'postalCode' is not supported"),
        ({"any": []}, "there are no rules"),
        (["not", "an object"], "not a JSON object"),
    ],
)
def test_rules_vary_cannot_map_are_problems(rules: object, problem: str) -> None:
    _, problems = rules_condition(rules, validate_condition)
    assert any(problem in p for p in problems), problems


def test_page_context_attributes_for_page_rules() -> None:
    garden = one({"type": "page", "conditions": [{"key": "path", "operator": "startsWith", "value": "/garden"}]})
    assert eval_condition(attributes(page="https://shop.example/garden/sets?utm_campaign=x"), garden)
    assert eval_condition(attributes(page="/garden"), garden)
    assert not eval_condition(attributes(page="https://shop.example/sofas"), garden)
    assert not eval_condition(attributes(), garden)
    query = one({"type": "page", "key": "query.ref", "operator": "equal", "value": "ad"})
    assert eval_condition(attributes(page="https://shop.example/?ref=ad"), query)
    utm = one({"type": "page", "conditions": [{"key": "utm_campaign", "operator": "equal", "value": "spring"}]})
    assert eval_condition(attributes(utm={"campaign": "spring"}), utm)
    assert not eval_condition(attributes(utm={"campaign": "autumn"}), utm)
    city = one({"type": "location", "key": "city", "operator": "equal", "value": "Berlin"})
    assert eval_condition(attributes(traits={"city": "Berlin"}), city)
    goals = one({"type": "track", "key": "signup", "count": 2})
    assert eval_condition(attributes(profile=Profile(goals={"signup": 2})), goals)
    assert not eval_condition(attributes(profile=Profile(goals={"signup": 1})), goals)


# -- what cannot be mapped is reported with the entry id ---------------------------------------------


def test_inline_variable_components_are_served_and_a_broken_one_reported_not_fatal(nt_export: Export) -> None:
    config = entry(nt_export, "ntExpEurope")["fields"]["nt_config"]["en-US"]
    config["components"].append(
        {"type": "InlineVariable", "key": "cta-color", "valueType": "String",
         "baseline": {"value": "blue"}, "variants": [{"value": "green"}]}
    )
    snapshot = compile_export(nt_export)
    assert problems_of(snapshot, "ntExpEurope") == []
    (flags,) = snapshot.flags
    assert flags.entry_id == "ntExpEurope" and [f.key for f in flags.flags] == ["cta-color"]
    config["components"][-1]["variants"] = [{"value": 7}]  # not text
    snapshot = compile_export(nt_export)
    (problem,) = problems_of(snapshot, "ntExpEurope")
    assert 'custom flag "cta-color" is of type String' in problem and "variant 1 holds 7" in problem
    assert "ntExpEurope" in snapshot.experiences and snapshot.flags == ()


def test_an_audience_with_an_unsupported_rule_switches_its_experiences_off(nt_export: Export) -> None:
    rules = entry(nt_export, "ntAudProPlan")["fields"]["nt_rules"]["en-US"]
    rules["any"][0]["all"].append({"type": "session", "operator": "greaterThan", "value": 3})
    snapshot = compile_export(nt_export)
    (audience_problem,) = problems_of(snapshot, "ntAudProPlan")
    assert "rule type 'session' is not supported" in audience_problem
    assert "rules.any[0].all[1]" in audience_problem
    (experience_problem,) = problems_of(snapshot, "ntExpProPlan")
    assert "has a problem of its own" in experience_problem and "switched off" in experience_problem
    assert "ntExpProPlan" not in snapshot.experiences
    assert [e.key for e in snapshot.experiences_for("heroHome")] == ["ntExpEurope", "ntExpNewVisitors"]
    issue = next(i for i in snapshot.issues if i.entry_id == "ntAudProPlan")
    assert issue.content_type == "nt_audience" and "Coming from Contentful Personalization" in issue.fix


@pytest.mark.parametrize(
    ("change", "entry_id", "problem", "switched_off"),
    [
        (lambda e: set_field(e, "ntExpEurope", "nt_type", "nt_rollout"), "ntExpEurope",
         "has type 'nt_rollout'", True),
        (lambda e: entry(e, "ntExpEurope")["fields"]["nt_config"]["en-US"].pop("traffic"), "ntExpEurope",
         "no traffic share", False),
        (lambda e: entry(e, "ntExpEurope")["fields"]["nt_config"]["en-US"].update(traffic=2), "ntExpEurope",
         "traffic 2", True),
        (lambda e: entry(e, "ntExpEurope")["fields"]["nt_config"]["en-US"].update(distribution=[0.5]), "ntExpEurope",
         "serves [0.5, 0, 0.5]", False),
        (lambda e: entry(e, "ntExpEurope")["fields"]["nt_config"]["en-US"].update(distribution=["a"]), "ntExpEurope",
         "not a list of shares", True),
        (lambda e: entry(e, "ntExpEurope")["fields"]["nt_config"]["en-US"]["components"][0]["variants"][0]
         .update(id="gone"), "ntExpEurope", 'variant "gone"', True),
        (lambda e: set_field(e, "ntExpEurope", "nt_audience", link("nope")), "ntExpEurope",
         'links audience "nope"', True),
        (lambda e: set_field(e, "ntExpEurope", "nt_config", None), "ntExpEurope", "no configuration", True),
        (lambda e: set_field(e, "heroHome", "nt_experiences", [link("ntExpEurope"), link("missing")]), "heroHome",
         'links experience "missing"', False),
        (lambda e: set_field(e, "bannerGarden", "nt_experiences", [link("ntExpEurope")]), "bannerGarden",
         "has no variants for this entry", False),
    ],
)
def test_mis_modelled_experiences_are_reported(
    nt_export: Export, change: Any, entry_id: str, problem: str, switched_off: bool
) -> None:
    change(nt_export)
    snapshot = compile_export(nt_export)
    problems = problems_of(snapshot, entry_id)
    assert any(problem in p for p in problems), problems
    if entry_id == "ntExpEurope":
        assert ("ntExpEurope" not in snapshot.experiences) is switched_off


def test_a_distribution_that_does_not_fit_is_laid_out_as_the_sdk_lays_it_out(nt_export: Export) -> None:
    entry(nt_export, "ntExpPromoTest")["fields"]["nt_config"]["en-US"]["distribution"] = [0.2, 0.3]
    # the SDK's ranges [0, 0.2] → baseline, [0.2, 0.5] → variant 1, the rest → the baseline: an extra arm
    experience = compile_export(nt_export).experiences["ntExpPromoTest"]
    assert experience.weights == pytest.approx((0.2, 0.3, 0.0, 0.5))
    assert experience.variants == ("bannerPromoShort", HIDDEN_VARIANT, "bannerPromo")  # the extra arm: baseline
    entry(nt_export, "ntExpPromoTest")["fields"]["nt_config"]["en-US"]["distribution"] = [0.5, 0.4, 0.4, 0.1]
    # shares past 1 are never reached
    assert compile_export(nt_export).experiences["ntExpPromoTest"].weights == pytest.approx((0.5, 0.4, 0.1))


def test_missing_distribution_and_experience_id(nt_export: Export) -> None:
    entry(nt_export, "ntExpPromoTest")["fields"]["nt_config"]["en-US"].pop("distribution")
    del entry(nt_export, "ntExpPromoTest")["fields"]["nt_experience_id"]
    entry(nt_export, "ntExpEurope")["fields"]["nt_config"]["en-US"].pop("distribution")
    snapshot = compile_export(nt_export)
    assert snapshot.issues == ()
    assert snapshot.experiences["ntExpPromoTest"].weights == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert snapshot.experiences["ntExpEurope"].weights == (0.0, 1.0)


# -- both content models in one space ------------------------------------------------------------------


def both_models(native: Export, nt_export: Export) -> Export:
    """The native demo space plus the Ninetailed types and the Europe experience on its heroHome."""
    export = copy.deepcopy(native)
    wanted_types = {"nt_experience", "nt_audience", "nt_mergetag", "ntHero"}
    export["contentTypes"] += [c for c in nt_export["contentTypes"] if c["sys"]["id"] in wanted_types]
    wanted = {"ntAudEurope", "ntExpEurope", "heroHomeEurope", "mergeTagFirstName"}
    export["entries"] += [e for e in nt_export["entries"] if e["sys"]["id"] in wanted]
    hero = next(c for c in export["contentTypes"] if c["sys"]["id"] == "hero")
    hero["fields"].append(next(f for f in nt_export["contentTypes"][0]["fields"] if f["id"] == "nt_experiences"))
    set_field(export, "heroHome", "nt_experiences", [link("ntExpEurope")])
    return export


def test_both_models_in_one_space(demo_export: Export, nt_export: Export) -> None:
    snapshot = compile_export(both_models(demo_export, nt_export))
    assert snapshot.issues == ()
    assert [e.key for e in snapshot.experiences_for("heroHome")] == ["hero-sale", "hero-north-america", "ntExpEurope"]
    assert {"priceSensitive", "ntAudEurope"} <= set(snapshot.audiences)
    assert "nt_experiences" not in fields(snapshot, "heroHome") and "varyExperiences" not in fields(snapshot, "heroHome")
    hero = snapshot.experiences_for("heroHome")
    german = attributes(country="DE", profile=Profile(visits=1))
    assert select_experience(hero, german, "v", {}, now=0.0).experience.key == "ntExpEurope"  # type: ignore[union-attr]
    canadian = attributes(country="CA", profile=Profile(visits=1))
    assert select_experience(hero, canadian, "v", {}, now=0.0).experience.key == "hero-north-america"  # type: ignore[union-attr]
    assert greeting_text(fields(snapshot, "heroHomeEurope", {"traits.firstname": "Ada"})).startswith("Hallo Ada")
    assert greeting_text(json.loads(bytes(snapshot.fields("heroHomeEurope", "de-DE", {})))).startswith("Hallo there")


def test_a_ninetailed_key_taken_by_a_native_experience(demo_export: Export, nt_export: Export) -> None:
    export = both_models(demo_export, nt_export)
    set_field(export, "ntExpEurope", "nt_experience_id", "hero-sale")
    snapshot = compile_export(export)
    (problem,) = problems_of(snapshot, "ntExpEurope")
    assert 'has the key "hero-sale", which another experience already uses' in problem
    assert snapshot.experiences["hero-sale"].id == "expHeroSale"
    assert [e.key for e in snapshot.experiences_for("heroHome")] == ["hero-sale", "hero-north-america"]


def test_a_component_or_its_variants_stored_as_one_object_are_read(nt_export: Export) -> None:
    """Real spaces hold ``components`` (and ``variants``) as a bare object where the app wrote one."""
    config = entry(nt_export, "ntExpPromoTest")["fields"]["nt_config"]["en-US"]
    (component,) = config["components"]
    config["distribution"] = [0.5, 0.5]
    component["variants"] = component["variants"][0]
    config["components"] = component
    snapshot = compile_export(nt_export)
    assert problems_of(snapshot, "ntExpPromoTest") == []
    assert snapshot.experiences["ntExpPromoTest"].variants == ("bannerPromoShort",)
