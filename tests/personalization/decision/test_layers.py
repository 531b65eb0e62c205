"""Mutually exclusive layers through ``decide()``: two experiences on different entries of one page
never reach the same visitor, each gets its share of the layer within sampling error and keeps its
weights inside it; the layer gate is GrowthBook's ``inNamespace`` (checked against its cases)."""

from __future__ import annotations

from typing import Any

import pytest
from scipy.stats import binom

from personalization.decision.decide import EntryRequest, decide
from personalization.decision.selection import layer_miss, select_experience
from personalization.types import Audience, Experience, Profile, Visitor
from tests.personalization.decision.conformance import case_params

N = 10_000
#: Two-sided 99.9 % binomial bounds: a correct split fails one check in a thousand runs at most,
#: and the visitor ids are fixed, so the test is deterministic.
ALPHA = 0.001


def _exp(key: str, layer: str | None = "page", share: tuple[float, float] | None = None, **kw: Any) -> Experience:
    fields: dict[str, Any] = dict(
        id=f"id-{key}", key=key, name=key, type="ab_test", variants=(f"{key}-b",), weights=(0.5, 0.5),
        layer=layer, layer_range=share,
    )
    fields.update(kw)
    return Experience(**fields)


def _bounds(n: int, p: float) -> tuple[float, float]:
    """The central 1 − ALPHA interval of Binomial(n, p)."""
    return float(binom.ppf(ALPHA / 2, n, p)), float(binom.isf(ALPHA / 2, n, p))


def _page(hero: Experience, banner: Experience) -> dict[str, tuple[str | None, int, str]]:
    """Visitor id → what each of N visitors was decided on the hero and banner entries."""
    seen: dict[str, Any] = {}
    for i in range(N):
        outcome = decide(
            Visitor(id=f"layer-visitor-{i}"), Profile(),
            [EntryRequest("hero", (hero,)), EntryRequest("banner", (banner,))], None, now=1_700_000_000.0,
        )
        seen[f"layer-visitor-{i}"] = outcome.decisions
    return seen


def test_two_experiences_in_one_layer_never_reach_one_visitor_and_each_gets_its_share() -> None:
    hero = _exp("hero-test", share=(0.0, 0.3), weights=(0.5, 0.5))
    banner = _exp("banner-test", share=(0.3, 1.0), weights=(0.2, 0.8))
    in_hero = in_banner = 0
    banner_variant_1 = hero_variant_1 = 0
    for decisions in _page(hero, banner).values():
        hero_d, banner_d = decisions
        assert not (hero_d.experience and banner_d.experience), "a visitor reached both experiences of a layer"
        if hero_d.experience:
            in_hero += 1
            hero_variant_1 += hero_d.variant
            assert banner_d.variant_entry_id == "banner" and "layer 'page'" in banner_d.reason
        if banner_d.experience:
            in_banner += 1
            banner_variant_1 += banner_d.variant
            assert hero_d.variant_entry_id == "hero" and "layer 'page'" in hero_d.reason
            assert banner_d.propensity == pytest.approx(0.8 if banner_d.variant else 0.2)
    # The ranges cover the whole layer and nothing else filters: everyone is in exactly one.
    assert in_hero + in_banner == N
    low, high = _bounds(N, 0.3)
    assert low <= in_hero <= high
    # Each keeps its weights inside its share (its own hash, independent of the layer's).
    low, high = _bounds(in_hero, 0.5)
    assert low <= hero_variant_1 <= high
    low, high = _bounds(in_banner, 0.8)
    assert low <= banner_variant_1 <= high


def test_a_layer_with_gaps_leaves_the_rest_on_the_baseline() -> None:
    hero = _exp("hero-test", share=(0.0, 0.25))
    banner = _exp("banner-test", share=(0.5, 0.75))
    counts = {"hero": 0, "banner": 0, "neither": 0}
    for hero_d, banner_d in _page(hero, banner).values():
        assert not (hero_d.experience and banner_d.experience)
        key = "hero" if hero_d.experience else "banner" if banner_d.experience else "neither"
        counts[key] += 1
    for key, p in (("hero", 0.25), ("banner", 0.25), ("neither", 0.5)):
        low, high = _bounds(N, p)
        assert low <= counts[key] <= high, (key, counts)


def test_outside_its_share_the_first_matching_experience_still_decides_the_entry() -> None:
    """Several experiences on ONE entry: the first whose audience matches decides, layered or not."""
    layered = _exp("layered", share=(0.0, 0.5))
    plain = _exp("plain", layer=None)
    outside = next(f"v{i}" for i in range(1000) if layer_miss(layered, f"v{i}") is not None)
    chosen = select_experience([layered, plain], {}, outside, {}, now=0.0)
    assert chosen.experience is None and chosen.variant == 0 and chosen.propensity == 1.0
    assert chosen.reason.startswith("baseline: everyone; layer 'page'") and "[0, 0.5)" in chosen.reason
    # An audience that does not match passes the entry on, as before.
    picky = _exp("picky", share=(0.0, 0.5), audience=Audience(id="a", key="a", name="Nobody", condition={"x": 1}))
    assert select_experience([picky, plain], {}, outside, {}, now=0.0).experience == plain


def test_a_sticky_assignment_from_before_the_layer_does_not_break_exclusivity() -> None:
    layered = _exp("layered", share=(0.0, 0.5))
    outside = next(f"v{i}" for i in range(1000) if layer_miss(layered, f"v{i}") is not None)
    inside = next(f"v{i}" for i in range(1000) if layer_miss(layered, f"v{i}") is None)
    assert select_experience([layered], {}, outside, {"layered": 1}, now=0.0).experience is None
    kept = select_experience([layered], {}, inside, {"layered": 1}, now=0.0)
    assert kept.experience == layered and kept.variant == 1 and "sticky" in kept.reason


def test_a_layered_experience_without_a_range_admits_no_one() -> None:
    assert "no range" in (layer_miss(_exp("x", share=None), "anyone") or "")
    assert layer_miss(_exp("x", layer=None), "anyone") is None


# -- GrowthBook conformance: the layer gate is inNamespace with the layer as the namespace id ------------


@pytest.mark.parametrize("case", case_params("inNamespace", lambda c: c[0]))
def test_layer_gate_matches_growthbook_namespaces(case: list[Any]) -> None:
    _, user_id, (namespace, start, end), expected = case
    experience = _exp("any", layer=namespace, share=(start, end))
    assert (layer_miss(experience, user_id) is None) is expected
