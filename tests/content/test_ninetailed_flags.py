"""Contentful Personalization custom flags (``InlineVariable`` components) on a real export.

The space is Contentful's own marketing-contentful-next export (tests/fixtures/ninetailed/), which
has no custom flag: two ``nt_experience`` entries are added in the shape the Contentful
Personalization app writes (``nt_config`` as read from a live space in public material: ``distribution``,
``traffic``, ``components: [{"type": "InlineVariable", "key", "valueType", "baseline": {"value"},
"variants": [{"value"}]}]``, ``distributionType``), one for everybody and one for the space's own
"North America" audience. Expected values follow the SDK: the arm is Ninetailed's distribution hash
(``personalization.decision.ninetailed_bucketing``, pinned against the npm SDK), the value of arm ``i`` is
``variants[i - 1].value`` and the baseline's for arm 0 or a missing variant
(``NinetailedPreviewPlugin.applyInlineVariableOverridesForExperience``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest

from content import ContentSnapshot
from content.experiences.ninetailed import MAX_FLAG_EXPERIENCES
from content.experiences.ninetailed_flags import CustomFlag
from personalization.decision.decide import EntryRequest, decide
from personalization.decision.ninetailed_bucketing import (
    distribution_random,
    select_arm,
    traffic_random,
)
from tests.content.spaces import compile_export, link
from tests.content.test_ninetailed_export import FIXTURES, NA, VISITORS

Export = dict[str, Any]
LAYOUT = {"layout": "two-column", "left": ["hero"], "right": ["order_summary"]}


def flag_experience(entry_id: str, name: str, config: dict[str, Any], audience: str | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "nt_name": {"en-US": name},
        "nt_type": {"en-US": "nt_experiment"},
        "nt_config": {"en-US": config},
        "nt_experience_id": {"en-US": entry_id},
        "nt_metadata": {"en-US": {"type": "origin"}},
    }
    if audience:
        fields["nt_audience"] = {"en-US": link(audience)}
    now = "2025-01-01T00:00:00.000Z"
    return {
        "sys": {"id": entry_id, "type": "Entry", "contentType": link("nt_experience", "ContentType"),
                "createdAt": now, "updatedAt": now, "publishedAt": now, "version": 2, "publishedVersion": 1},
        "fields": fields,
    }  # fmt: skip


def flag_space() -> Export:
    """Contentful's marketing-contentful-next export with two custom-flag experiences added."""
    space = json.loads((FIXTURES / "marketing-contentful-next.json").read_text(encoding="utf-8"))
    space["entries"] += [
        flag_experience("ntFlagLayout", "Frontend Controlled Experiment", {
            "distribution": [0.5, 0.5], "traffic": 1, "distributionType": "even-split",
            "primaryMetric": "bbbdad70-a45f-4005-85a1-dafd89832980",
            "components": [{"type": "InlineVariable", "key": "ticketing-layout", "valueType": "Object",
                            "baseline": {"value": {"layout": "one-column"}}, "variants": [{"value": LAYOUT}]}],
        }),
        flag_experience("ntFlagBanner", "Banner copy for North America", {
            "distribution": [0.2, 0.3, 0.5], "traffic": 0.8, "distributionType": "manual",
            # drift seen in real spaces: a single component stored as an object, not a list
            "components": {"type": "InlineVariable", "key": "banner-copy", "valueType": "String",
                           "baseline": {"value": "Welcome"}, "variants": [{"value": "Howdy"}, {"value": "Hi there"}]},
        }, audience=NA),
    ]  # fmt: skip
    return space


@pytest.fixture(scope="module")
def export() -> Export:
    return flag_space()


@pytest.fixture(scope="module")
def snapshot(export: Export) -> ContentSnapshot:
    return compile_export(export)


def test_custom_flag_experiences_compile_with_no_issue(snapshot: ContentSnapshot) -> None:
    assert snapshot.issues == ()
    by_id = {f.entry_id: f for f in snapshot.flags}
    assert [f.entry_id for f in snapshot.flags] == ["ntFlagBanner", "ntFlagLayout"]  # by entry id
    assert by_id["ntFlagLayout"].flags == (
        CustomFlag(key="ticketing-layout", value_type="Object", baseline={"layout": "one-column"}, variants=(LAYOUT,)),
    )
    banner = snapshot.experiences["ntFlagBanner"]
    assert banner.weights == (0.2, 0.3, 0.5) and banner.traffic_allocation == 0.8
    assert banner.audience is not None and banner.audience.id == NA
    # decided under its own entry id; every real experience of the space is still there
    assert snapshot.experiences_for("ntFlagBanner") == (banner,)
    assert len(snapshot.experiences) == 17


def expected_arm(entry_id: str, traffic: float, weights: tuple[float, ...], visitor_id: str) -> int | None:
    """The SDK's choice (``isExperienceMatch`` traffic, ``selectDistribution``); ``None``: not in it."""
    if not traffic > traffic_random(entry_id, visitor_id):
        return None
    return select_arm(distribution_random(entry_id, visitor_id), weights)


def test_each_visitor_gets_the_value_of_the_sdk_arm(snapshot: ContentSnapshot) -> None:
    flags = {f.entry_id: f for f in snapshot.flags}
    requests = [EntryRequest(f.entry_id, snapshot.experiences_for(f.entry_id)) for f in snapshot.flags]
    seen: set[tuple[str, object]] = set()
    for name, (visitor, profile, membership) in VISITORS.items():
        in_na = NA in membership.get("marketing-contentful-next.json", membership.get("*", set()))
        for i in range(40):
            someone = msgspec.structs.replace(visitor, id=f"{name}/{i}")
            outcome = decide(someone, profile, requests, None, now=0.0)
            for decision in outcome.decisions:
                experience = snapshot.experiences[decision.entry_id]
                wanted = expected_arm(decision.entry_id, experience.traffic_allocation, experience.weights, someone.id)
                if decision.entry_id == "ntFlagBanner" and not in_na:
                    wanted = None
                if wanted is None:
                    assert decision.experience is None, (name, i)
                    continue
                assert (decision.experience, decision.variant) == (experience.key, wanted)
                (flag,) = flags[decision.entry_id].flags
                seen.add((flag.key, json.dumps(flag.value(decision.variant))))
    # every value of both flags came up
    assert seen == {("ticketing-layout", json.dumps({"layout": "one-column"})),
                    ("ticketing-layout", json.dumps(LAYOUT)), ("banner-copy", '"Welcome"'),
                    ("banner-copy", '"Howdy"'), ("banner-copy", '"Hi there"')}  # fmt: skip
    # an arm with no variant value serves the baseline's, as Ninetailed's preview plugin does
    assert CustomFlag(key="k", value_type="String", baseline="a", variants=("b",)).value(2) == "a"


@pytest.mark.parametrize(
    ("component", "problem"),
    [
        ({"type": "InlineVariable", "valueType": "String", "baseline": {"value": "a"}, "variants": []},
         "has no flag key"),
        ({"type": "InlineVariable", "key": "k", "valueType": "Date", "baseline": {"value": "a"}, "variants": []},
         "has value type 'Date'"),
        ({"type": "InlineVariable", "key": "k", "valueType": "Number", "baseline": {"value": 1},
          "variants": [{"value": "2"}]}, "is of type Number (a number), but variant 1 holds '2'"),
        ({"type": "InlineVariable", "key": "k", "valueType": "Boolean", "baseline": {}, "variants": []},
         "has no baseline value"),
    ],
)  # fmt: skip
def test_a_flag_vary_cannot_serve_is_reported_with_its_entry(export: Export, component: dict[str, Any], problem: str) -> None:
    broken = copy.deepcopy(export)
    entry = next(e for e in broken["entries"] if e["sys"]["id"] == "ntFlagLayout")
    entry["fields"]["nt_config"]["en-US"]["components"].append(component)
    snapshot = compile_export(broken)
    (issue,) = snapshot.issues
    assert issue.entry_id == "ntFlagLayout" and problem in issue.problem, issue.problem
    # the experience's other flag is still served
    (layout,) = [f for f in snapshot.flags if f.entry_id == "ntFlagLayout"]
    assert [f.key for f in layout.flags] == ["ticketing-layout"]


def test_one_key_in_two_experiences_is_reported(export: Export) -> None:
    clash = copy.deepcopy(export)
    entry = next(e for e in clash["entries"] if e["sys"]["id"] == "ntFlagBanner")
    entry["fields"]["nt_config"]["en-US"]["components"]["key"] = "ticketing-layout"
    entry["fields"]["nt_config"]["en-US"]["components"]["valueType"] = "String"
    (issue,) = compile_export(clash).issues
    assert issue.entry_id == "ntFlagBanner" and '"ticketing-layout"' in issue.problem and '"ntFlagLayout"' in issue.problem


def test_flags_beside_entry_replacements_share_the_arm(export: Export) -> None:
    mixed = copy.deepcopy(export)
    hero = next(e for e in mixed["entries"] if e["sys"]["id"] == "4aSQ6HYCrSQP2UktnEGq3X")  # a real experiment
    hero["fields"]["nt_config"]["en-US"]["components"].append(
        {"type": "InlineVariable", "key": "hero-cta", "valueType": "Boolean",
         "baseline": {"value": False}, "variants": [{"value": True}]})  # fmt: skip
    snapshot = compile_export(mixed)
    assert snapshot.issues == ()
    (flag_experience,) = [f for f in snapshot.flags if f.entry_id == "4aSQ6HYCrSQP2UktnEGq3X"]
    (by_flag,) = snapshot.experiences_for("4aSQ6HYCrSQP2UktnEGq3X")
    attached = [e for e in snapshot.entries if any(x.id == "4aSQ6HYCrSQP2UktnEGq3X" for x in snapshot.experiences_for(e))]
    # its baseline entries keep their entry replacements, and its own id decides the flag
    assert "4aSQ6HYCrSQP2UktnEGq3X" in attached and len(attached) >= 2
    assert set(snapshot.baselines()[flag_experience.key]) == set(attached)
    template, profile, _ = VISITORS["new in the US"]
    decided = 0
    for i in range(30):
        visitor = msgspec.structs.replace(template, id=f"v{i}")
        outcome = decide(visitor, profile, [EntryRequest(e, snapshot.experiences_for(e)) for e in attached], None, now=0.0)
        arms = {d.variant for d in outcome.decisions if d.experience == by_flag.key}
        assert len(arms) <= 1  # one assignment for the entries and the flag
        decided += len(arms)
    assert decided == 30


def test_at_most_fifty_flag_experiences_are_served(export: Export) -> None:
    many = copy.deepcopy(export)
    config = {"distribution": [0.5, 0.5], "traffic": 1,
              "components": [{"type": "InlineVariable", "key": "k", "valueType": "Boolean",
                              "baseline": {"value": False}, "variants": [{"value": True}]}]}  # fmt: skip
    for i in range(MAX_FLAG_EXPERIENCES):  # 52 in all with the two of the space
        one = copy.deepcopy(config)
        one["components"][0]["key"] = f"flag-{i:02d}"
        many["entries"].append(flag_experience(f"ntMany{i:02d}", f"Flag {i}", one))
    snapshot = compile_export(many)
    assert len(snapshot.flags) == MAX_FLAG_EXPERIENCES
    assert [i.entry_id for i in snapshot.issues] == ["ntMany48", "ntMany49"]  # the last two by entry id
    assert all(f"Only {MAX_FLAG_EXPERIENCES} experiences" in i.problem for i in snapshot.issues)
