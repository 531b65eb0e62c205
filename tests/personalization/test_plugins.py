"""The plugin seams' guards and the registry, without HTTP: pure functions and in-memory plugins."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from content.sources import demo_space_path
from personalization.decision.features import build_features
from personalization.decision.selection import select_experience
from personalization.plugins import (
    GuardedAttributes,
    PluginHealth,
    Registry,
    guard_extractor,
    guard_policy,
)
from personalization.seams import Plugin, SinkRecord
from personalization.types import Assignment, Experience, Exposure, Profile, Visitor
from tests.content.spaces import compile_export, entry

VISITOR = Visitor(id="v-1", country="CA")


async def tier(visitor: Visitor) -> Mapping[str, str]:
    return {"crm_tier": "gold"}


async def raises(visitor: Visitor) -> Mapping[str, str]:
    raise RuntimeError("boom")


async def hangs(visitor: Visitor) -> Mapping[str, str]:
    await asyncio.Event().wait()
    return {}


async def not_a_mapping(visitor: Visitor) -> Any:
    return ["crm_tier"]


def _lookup(*sources: tuple[Any, float]) -> tuple[GuardedAttributes, list[PluginHealth]]:
    guarded = GuardedAttributes()
    healths = []
    for i, (source, timeout) in enumerate(sources):
        health = PluginHealth()
        guarded.add(f"p{i}", source, timeout, health)
        healths.append(health)
    return guarded, healths


def test_guarded_attributes_merge_and_survive_errors_and_hangs() -> None:
    guarded, (ok, bad, slow, wrong) = _lookup((tier, 1.0), (raises, 1.0), (hangs, 0.01), (not_a_mapping, 1.0))
    assert asyncio.run(guarded(VISITOR)) == {"crm_tier": "gold"}
    assert (ok.calls, ok.failures) == (1, 0)
    assert (bad.failures, bad.timeouts, bad.last_error) == (1, 0, "RuntimeError: boom")
    assert (slow.failures, slow.timeouts, slow.last_error) == (1, 1, "timed out after 0.01 s")
    assert wrong.failures == 1 and "not a mapping" in (wrong.last_error or "")
    assert bad.last_error_at is not None


def test_no_attribute_sources_is_falsy_so_the_service_skips_the_step() -> None:
    assert not GuardedAttributes()
    assert _lookup((tier, 1.0))[0]


def test_extractors_feed_build_features_while_installed_and_never_replace_builtins() -> None:
    def crm_features(visitor: Visitor, profile: Profile, now: float) -> Mapping[str, float | str]:
        return {"crm_ltv": 120.0, "channel": "not-mine"}

    registry = Registry()
    before = build_features(VISITOR, Profile(), 0.0, extractors=registry.extractors)
    undo = registry.install(extractors=[crm_features])
    try:
        during = build_features(VISITOR, Profile(), 0.0, extractors=registry.extractors)
    finally:
        undo()
    assert during == {**before, "crm_ltv": 120.0}
    assert build_features(VISITOR, Profile(), 0.0, extractors=registry.extractors) == before


def test_a_failing_extractor_adds_nothing_and_is_counted() -> None:
    def broken(visitor: Visitor, profile: Profile, now: float) -> Mapping[str, float | str]:
        raise KeyError("ltv")

    health = PluginHealth()
    registry = Registry()
    undo = registry.install(extractors=[guard_extractor("crm", broken, health)])
    try:
        row = build_features(VISITOR, Profile(), 0.0, extractors=registry.extractors)
    finally:
        undo()
    assert row == build_features(VISITOR, Profile(), 0.0)
    assert (health.calls, health.failures, health.last_error) == (1, 1, "KeyError: 'ltv'")


class Everyone:
    type = "everyone_variant"

    def assign(self, experience: Experience, visitor_id: str, sticky: int | None, attributes: Any, context: Any) -> Assignment:
        return Assignment(experience=experience, variant=len(experience.variants), holdout=False, propensity=1.0,
                          reason=f"everyone_variant for tier {attributes.get('crm_tier')}")


class Broken:
    type = "broken_policy"

    def assign(self, *args: Any) -> Assignment:
        raise ZeroDivisionError("oops")


def _experience(kind: str) -> Experience:
    return Experience(id="e", key="exp", name="Exp", type=kind, variants=("a", "b"),  # type: ignore[arg-type]
                      weights=(0.0, 0.5, 0.5))


def test_registry_refuses_builtin_and_duplicate_types_and_undo_restores() -> None:
    own = Registry()
    with pytest.raises(ValueError, match="built in"):
        own.install(policies=[type("P", (), {"type": "ab_test"})()])
    undo = own.install(policies=[Everyone()])
    with pytest.raises(ValueError, match="twice"):
        own.install(policies=[Everyone()])
    assert own.policy_types() == ("everyone_variant",)
    undo()
    assert own.policy_types() == () and own.policy("everyone_variant") is None


def test_selection_dispatches_a_plugin_type_and_an_unknown_type_is_skipped() -> None:
    registry = Registry()
    undo = registry.install(policies=[Everyone(), guard_policy("x", Broken(), PluginHealth())])
    try:
        chosen = select_experience([_experience("everyone_variant")], {"crm_tier": "gold"}, "v", {}, 0.0,
                                   plugin_policies=registry.policies)
        failed = select_experience([_experience("broken_policy")], {}, "v", {}, 0.0,
                                   plugin_policies=registry.policies)
    finally:
        undo()
    assert chosen.variant == 2 and chosen.reason == "everyone; everyone_variant for tier gold"
    assert failed.experience is None and failed.variant == 0 and "'broken_policy' policy failed" in failed.reason
    unknown = select_experience([_experience("everyone_variant")], {}, "v", {}, 0.0,
                                plugin_policies=registry.policies)
    assert unknown.experience is None and "no policy for type 'everyone_variant'" in unknown.reason


def test_a_plugin_type_compiles_only_while_its_policy_is_installed() -> None:
    export = json.loads(demo_space_path().read_text())
    entry(export, "bannerShippingTest")["fields"]["type"]["en-US"] = "everyone_variant"
    registry = Registry()
    without = compile_export(export, plugin_types=frozenset(registry.policy_types()))
    assert "banner-shipping-test" not in without.experiences
    (issue,) = [i for i in without.issues if i.entry_id == "bannerShippingTest"]
    assert "everyone_variant" in issue.problem
    undo = registry.install(policies=[Everyone()])
    try:
        with_plugin = compile_export(export, plugin_types=frozenset(registry.policy_types()))
    finally:
        undo()
    compiled = with_plugin.experiences["banner-shipping-test"]
    assert compiled.type == "everyone_variant" and len(compiled.weights) == len(compiled.variants) + 1
    assert not [i for i in with_plugin.issues if i.entry_id == "bannerShippingTest"]


def test_plugin_seams_and_message_ids() -> None:
    assert Plugin(name="a").seams == []
    assert Plugin(name="b", attributes=[tier], content_source=lambda: None).seams == ["attributes", "content_source"]
    exposure = Exposure(id="x1", ts=0.0, visitor_id=None, session_id=None, channel="web", entry_id="e",
                        variant_entry_id="e", experience=None, variant=0, is_control=True, holdout=False,
                        propensity=1.0)
    assert SinkRecord("exposure", "vary:exposures", "1-0", exposure).message_id == "vary-exposure-x1"
