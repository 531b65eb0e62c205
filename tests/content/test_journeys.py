"""varyJourney entries compiled into journeys: the demo's shopping journey, stage matching, and
mis-modelled journeys reported (and left out) without touching the rest of the space."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from content import ContentSnapshot
from content.journeys import DETAILED_EVENT_TYPES, JOURNEY_TYPE, compile_journeys
from content.sources import items_from_export
from personalization.measurement.events import Event
from personalization.types import EVENT_TYPES, Journey, JourneyStage
from tests.content.spaces import add_entry, compile_export, entry, set_field

Export = dict[str, Any]

SHOPPING_STAGES = ("find", "evaluate", "decide", "buy", "engage")


@pytest.fixture
def demo(demo_export: Export) -> ContentSnapshot:
    return compile_export(demo_export)


def _stage(key: str, **settings: Any) -> dict[str, Any]:
    return {"key": key, **settings}


def _issues(export: Export) -> list[tuple[str, str, str]]:
    snapshot = compile_export(export)
    return [(i.entry_id, i.content_type, i.problem) for i in snapshot.issues]


# -- the demo ----------------------------------------------------------------------------------------


def test_demo_ships_the_shopping_journey(demo: ContentSnapshot) -> None:
    assert demo.issues == ()
    assert list(demo.journeys) == ["shopping"]
    shopping = demo.journeys["shopping"]
    assert shopping.id == "journeyShopping" and shopping.name == "Shopping journey"
    assert tuple(s.key for s in shopping.stages) == SHOPPING_STAGES
    find, evaluate, decide, buy, engage = shopping.stages
    assert find == JourneyStage(key="find", name="Find", touchpoints=("home", "search", "category"),
                                event_types=("page_view",))
    assert evaluate.touchpoints == ("product", "reviews") and evaluate.event_types == ("page_view", "click")
    assert decide.touchpoints == ("cart", "checkout") and decide.event_types == ("click", "task")
    assert buy.event_types == ("purchase", "conversion:purchase")
    assert engage.touchpoints == ("account", "email")
    assert engage.event_types == ("survey", "feedback", "page_view")


def test_journeys_on_the_snapshot_are_read_only(demo: ContentSnapshot) -> None:
    with pytest.raises(TypeError):
        demo.journeys["x"] = demo.journeys["shopping"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        demo.journeys = {}  # type: ignore[misc]


def test_a_journey_does_not_change_how_the_rest_compiles(demo_export: Export, demo: ContentSnapshot) -> None:
    without = {**demo_export, "entries": [e for e in demo_export["entries"] if e["sys"]["id"] != "journeyShopping"]}
    other = compile_export(without)
    assert other.journeys == {} and dict(other.experiences) == dict(demo.experiences)
    assert other.version != demo.version
    assert compile_export(demo_export).version == demo.version  # deterministic


def test_event_types_are_the_events_front_ends_send() -> None:
    assert set(EVENT_TYPES) == {cls.__struct_config__.tag for cls in typing.get_args(Event)}
    assert set(DETAILED_EVENT_TYPES) <= set(EVENT_TYPES)
    from personalization.measurement.journeys import _DETAIL

    assert _DETAIL == DETAILED_EVENT_TYPES  # what the journey map reads is what the compiler allows


# -- matching ----------------------------------------------------------------------------------------


def test_a_stage_matches_touchpoint_and_type_and_empty_means_any() -> None:
    buy = JourneyStage(key="buy", name="Buy", touchpoints=("checkout", "confirmation"),
                       event_types=("purchase", "conversion:purchase"))
    assert buy.matches("purchase", "checkout")
    assert buy.matches("conversion", "confirmation", "purchase")
    assert not buy.matches("conversion", "confirmation", "signup")
    assert not buy.matches("conversion", "confirmation")
    assert not buy.matches("purchase", "home")
    assert not buy.matches("purchase", None)  # no touchpoint: only a stage that names none matches
    anything = JourneyStage(key="any", name="Any")
    assert anything.matches("identify", None) and anything.matches("click", "home", None)
    typed = JourneyStage(key="t", name="T", event_types=("task:checkout",))
    assert typed.matches("task", "anywhere", "checkout") and not typed.matches("task", "anywhere", "login")
    assert buy.at_touchpoint("checkout") and not buy.at_touchpoint(None) and anything.at_touchpoint(None)


# -- mis-modelled journeys ---------------------------------------------------------------------------


def test_defaults_and_deduplication(demo_export: Export) -> None:
    set_field(demo_export, "journeyShopping", "stages", [
        _stage("a", touchpoints=[" home ", "home"]),  # stripped, duplicates dropped
        _stage("b", name="  "),  # blank name: the key
    ])
    journey = compile_export(demo_export).journeys["shopping"]
    assert journey.stages == (
        JourneyStage(key="a", name="a", touchpoints=("home",)),
        JourneyStage(key="b", name="b"),
    )


@pytest.mark.parametrize(
    ("stages", "problem"),
    [
        (None, "has no stages"),
        ([], "has no stages"),
        ({"key": "find"}, "has no stages"),
        (["find"], "stage 1 is not a JSON object"),
        ([_stage("find"), _stage("")], "stage 2 has no key"),
        ([_stage("find"), _stage("find")], 'two stages with the key "find"'),
        ([_stage("find", touchpoint=["home"])], "settings Vary does not know: touchpoint"),
        ([_stage("find", touchpoints="home")], "touchpoints that are not a list of names"),
        ([_stage("find", touchpoints=["home", 3])], "touchpoints that are not a list of names"),
        ([_stage("find", event_types="page_view")], "event types that are not a list of names"),
        ([_stage("find", event_types=["pageview"])], "event types Vary does not know: pageview"),
        ([_stage("find", event_types=["click:cta"])], "event types Vary does not know: click:cta"),
        ([_stage("find", event_types=["conversion:"])], "event types Vary does not know: conversion:"),
        ([_stage("find", name=5)], "has a name that is not text"),
    ],
)
def test_a_bad_stage_leaves_the_journey_out_with_an_issue(
    demo_export: Export, stages: Any, problem: str
) -> None:
    set_field(demo_export, "journeyShopping", "stages", stages)
    snapshot = compile_export(demo_export)
    assert "shopping" not in snapshot.journeys
    issues = [(i.entry_id, i.content_type) for i in snapshot.issues]
    assert issues == [("journeyShopping", JOURNEY_TYPE)]
    issue = snapshot.issues[0]
    assert problem in issue.problem and issue.problem.endswith("The journey is left out of reports.")
    assert issue.problem.startswith('Journey "Shopping journey"') and issue.fix
    assert set(snapshot.experiences) == {"hero-sale", "hero-north-america", "banner-shipping-test",
                                         "newsletter-copy"}  # the rest still serves


def test_every_problem_of_a_journey_is_reported_at_once(demo_export: Export) -> None:
    set_field(demo_export, "journeyShopping", "key", "")
    set_field(demo_export, "journeyShopping", "stages", [_stage("a", event_types=["nope"]), 7])
    problems = [p for _, _, p in _issues(demo_export)]
    assert len(problems) == 3
    assert "has no key" in problems[0] and "nope" in problems[1] and "stage 2 is not" in problems[2]


def test_a_shared_key_stays_with_the_journey_published_first(demo_export: Export) -> None:
    copy = add_entry(demo_export, "journeyCopy", JOURNEY_TYPE, {
        "name": "Copy", "key": "shopping", "stages": [_stage("x")],
    })
    copy["sys"]["createdAt"] = copy["sys"]["firstPublishedAt"] = "2025-07-01T00:00:00.000Z"
    snapshot = compile_export(demo_export)
    assert snapshot.journeys["shopping"].id == "journeyShopping"
    assert [(i.entry_id, 'uses the key "shopping"' in i.problem) for i in snapshot.issues] == [("journeyCopy", True)]


def test_a_long_key_and_a_missing_name(demo_export: Export) -> None:
    add_entry(demo_export, "journeyNoName", JOURNEY_TYPE, {"key": "support", "stages": [_stage("ask")]})
    add_entry(demo_export, "journeyLong", JOURNEY_TYPE, {"key": "k" * 300, "stages": [_stage("ask")]})
    snapshot = compile_export(demo_export)
    assert snapshot.journeys["support"].name == "support"
    assert [(i.entry_id, "longer than 256" in i.problem) for i in snapshot.issues] == [("journeyLong", True)]
    assert snapshot.issues[0].problem.startswith('Journey "journeyLong"')  # no name: the entry id


def test_compile_journeys_directly(demo_export: Export) -> None:
    items = items_from_export(demo_export)
    journeys, issues = compile_journeys(items, "en-US")
    assert issues == [] and isinstance(journeys["shopping"], Journey)
    entry(demo_export, "journeyShopping")["fields"]["stages"] = {"de-DE": [_stage("x")]}  # wrong locale
    journeys, issues = compile_journeys(items_from_export(demo_export), "en-US")
    assert journeys == {} and "has no stages" in issues[0].problem
