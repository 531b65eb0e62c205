"""Issue #18 in content: an experience's ``guardrails``, its ``updated_at`` (phases), the reserved key
``_global`` and the space's ``globalHoldout`` (a ``varySettings`` field)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import content
from content.experiences.guardrails import DEFAULT_HARM, MAX_GUARDRAILS, parse_guardrails
from content.settings import SETTINGS_TYPE
from personalization.types import Guardrail
from tests.content.spaces import add_entry, compile_export, entry, set_field

NT_DEMO = Path(content.__file__).parent / "demo" / "ninetailed.json"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


def _problems(snapshot: Any, entry_id: str) -> list[str]:
    return [i.problem for i in snapshot.issues if i.entry_id == entry_id]


# --- guardrails -----------------------------------------------------------------------------------


def test_the_demo_space_has_one_experience_with_guardrails_and_a_global_holdout(demo_export: dict[str, Any]) -> None:
    snapshot = compile_export(demo_export)
    assert snapshot.issues == ()
    guarded = {key: x.guardrails for key, x in snapshot.experiences.items() if x.guardrails}
    assert guarded == {"banner-shipping-test": (Guardrail(metric="csat", harm="decrease"),
                                                Guardrail(metric="task_success", harm="decrease"))}
    assert snapshot.global_holdout == 0.05


def test_harm_defaults_per_metric_and_can_be_given(demo_export: dict[str, Any]) -> None:
    set_field(demo_export, "expHeroSale", "guardrails", [
        {"metric": "task_success"}, {"metric": "abandonment"}, {"metric": "csat"}, {"metric": "ces"},
        {"metric": "nps"}, {"metric": "goal:purchase"}, {"metric": "goal:signup", "harm": "increase"},
        "csat",  # a duplicate (written as a bare name) keeps the first
    ])
    snapshot = compile_export(demo_export)
    assert snapshot.issues == ()
    assert [(g.metric, g.harm) for g in snapshot.experiences["hero-sale"].guardrails] == [
        ("task_success", "decrease"), ("abandonment", "increase"), ("csat", "decrease"), ("ces", "increase"),
        ("nps", "decrease"), ("goal:purchase", "decrease"), ("goal:signup", "increase"),
    ]
    assert DEFAULT_HARM == {"task_success": "decrease", "abandonment": "increase", "csat": "decrease",
                            "ces": "increase", "nps": "decrease"}


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"metric": "revenue"}, 'the metric "revenue", which Vary does not measure'),
        ({"metric": "csat", "harm": "down"}, "has harm 'down'"),
        ({"metric": "goal:"}, 'the metric "goal:"'),
        ({"harm": "increase"}, "has no metric"),
        ({"metric": "csat", "threshold": 3}, "fields Vary does not know: threshold"),
        (42, 'not an object like {"metric": "csat"}'),
    ],
)
def test_a_bad_guardrail_is_an_issue_naming_entry_and_field_and_the_experience_still_runs(
    demo_export: dict[str, Any], bad: object, said: str
) -> None:
    set_field(demo_export, "expHeroSale", "guardrails", [bad, {"metric": "nps"}])
    snapshot = compile_export(demo_export)
    [problem] = _problems(snapshot, "expHeroSale")
    assert "Guardrail 1" in problem and "guardrails field" in problem and said in problem
    assert "left out" in problem and "switched off" not in problem
    assert snapshot.issues[0].content_type == "varyExperience"
    assert snapshot.experiences["hero-sale"].guardrails == (Guardrail(metric="nps", harm="decrease"),)


def test_a_guardrails_field_that_is_not_a_list_is_reported(demo_export: dict[str, Any]) -> None:
    set_field(demo_export, "expHeroSale", "guardrails", {"metric": "csat"})
    snapshot = compile_export(demo_export)
    [problem] = _problems(snapshot, "expHeroSale")
    assert "guardrails field is not a JSON list" in problem
    assert "hero-sale" in snapshot.experiences and snapshot.experiences["hero-sale"].guardrails == ()


def test_too_many_guardrails_are_cut() -> None:
    raw = [{"metric": f"goal:g{n}"} for n in range(MAX_GUARDRAILS + 2)]
    guardrails, problems = parse_guardrails(raw)
    assert len(guardrails) == MAX_GUARDRAILS and len(problems) == 1
    assert parse_guardrails(None) == ((), []) and parse_guardrails([]) == ((), [])


# --- updated_at and the reserved key ----------------------------------------------------------------


def test_updated_at_is_the_later_edit_of_the_experience_and_its_audience(demo_export: dict[str, Any]) -> None:
    experience_sys = entry(demo_export, "expHeroSale")["sys"]
    audience_sys = entry(demo_export, "priceSensitive")["sys"]
    experience_sys["publishedAt"] = "2025-07-01T10:00:00.000Z"
    audience_sys["publishedAt"] = "2025-06-01T10:00:00.000Z"
    assert compile_export(demo_export).experiences["hero-sale"].updated_at == _epoch("2025-07-01T10:00:00Z")
    audience_sys["publishedAt"] = "2025-08-15T12:30:00.000Z"  # the audience was edited later
    assert compile_export(demo_export).experiences["hero-sale"].updated_at == _epoch("2025-08-15T12:30:00Z")
    # No audience: the experience entry's own edit.
    snapshot = compile_export(demo_export)
    plain = snapshot.experiences["banner-shipping-test"]
    assert plain.audience is None
    assert plain.updated_at == _epoch(entry(demo_export, "bannerShippingTest")["sys"]["publishedAt"])


def test_ninetailed_experiences_get_updated_at_too() -> None:
    export = json.loads(NT_DEMO.read_text(encoding="utf-8"))
    entry(export, "ntAudEurope")["sys"]["publishedAt"] = "2025-09-09T09:00:00.000Z"
    snapshot = compile_export(export)
    assert snapshot.experiences["ntExpEurope"].updated_at == _epoch("2025-09-09T09:00:00Z")
    own = entry(export, "ntExpPromoTest")["sys"]["publishedAt"]  # no audience
    assert snapshot.experiences["ntExpPromoTest"].updated_at == _epoch(own)


@pytest.mark.parametrize("key", ["_global", "hero@p2"])
def test_reserved_keys_are_an_issue(demo_export: dict[str, Any], key: str) -> None:
    set_field(demo_export, "expHeroSale", "key", key)
    snapshot = compile_export(demo_export)
    [problem] = _problems(snapshot, "expHeroSale")
    assert "key Vary cannot use" in problem and "switched off" in problem
    assert key not in snapshot.experiences


def test_a_ninetailed_experience_cannot_be_keyed_global() -> None:
    export = json.loads(NT_DEMO.read_text(encoding="utf-8"))
    set_field(export, "ntExpPromoTest", "nt_experience_id", "_global")
    snapshot = compile_export(export)
    assert any("reserved" in p for p in _problems(snapshot, "ntExpPromoTest"))
    assert "_global" not in snapshot.experiences


# --- the global holdout -----------------------------------------------------------------------------


def _settings(export: dict[str, Any], value: object) -> None:
    set_field(export, "spaceSettings", "globalHoldout", value)


@pytest.mark.parametrize("value", [0, 0.02, 0.5])
def test_a_global_holdout_between_0_and_half_is_read(demo_export: dict[str, Any], value: float) -> None:
    _settings(demo_export, value)
    snapshot = compile_export(demo_export)
    assert snapshot.global_holdout == value and snapshot.issues == ()


@pytest.mark.parametrize("value", [0.6, -0.1, "0.05", True, [0.05]])
def test_a_bad_global_holdout_is_an_issue_and_not_set(demo_export: dict[str, Any], value: object) -> None:
    _settings(demo_export, value)
    snapshot = compile_export(demo_export)
    assert snapshot.global_holdout is None
    [issue] = snapshot.issues
    assert issue.entry_id == "spaceSettings" and issue.content_type == SETTINGS_TYPE
    assert "Global holdout is" in issue.problem and "between 0 and 0.5" in issue.problem


def test_no_settings_entry_or_field_means_no_global_holdout(demo_export: dict[str, Any]) -> None:
    del entry(demo_export, "spaceSettings")["fields"]["globalHoldout"]
    assert compile_export(demo_export).global_holdout is None
    demo_export["entries"] = [e for e in demo_export["entries"] if e["sys"]["id"] != "spaceSettings"]
    assert compile_export(demo_export).global_holdout is None


def test_only_the_settings_entry_in_use_sets_the_global_holdout(demo_export: dict[str, Any]) -> None:
    later = add_entry(demo_export, "settingsCopy", SETTINGS_TYPE, {"name": "Copy", "globalHoldout": 0.3})
    later["sys"]["createdAt"] = later["sys"]["firstPublishedAt"] = "2026-01-01T00:00:00.000Z"
    snapshot = compile_export(demo_export)
    assert snapshot.global_holdout == 0.05
    assert any(i.entry_id == "settingsCopy" and "more than one" in i.problem for i in snapshot.issues)
