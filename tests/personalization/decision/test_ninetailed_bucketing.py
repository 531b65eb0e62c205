"""Contentful Personalization's bucketing, re-stated in Python, against values its SDK computed.

Every number below was printed by ``@ninetailed/experience.js-shared`` 7.7.0 under Node
(``getTrafficRandom``, ``getDistributionRandom``, ``selectDistribution``, ``murmurhash-js``'s ``murmur3``;
the harness is tests/fixtures/ninetailed_sdk/randoms.cjs). tests/content/test_ninetailed_parity.py runs
the SDK itself on thousands of visitors; these cases keep the arithmetic pinned without Node.
"""

from __future__ import annotations

import pytest

from personalization.decision.ninetailed_bucketing import (
    assign_ninetailed,
    distribution_random,
    distribution_ranges,
    murmur3_32,
    select_arm,
    traffic_random,
)
from personalization.decision.selection import select_experience
from personalization.types import Experience

#: (experience id, stable id, distribution, traffic random, distribution random, arm, murmur3 of
#: "distribution-<id>-<stable id>") as the SDK computed them. Non-ASCII ids hash each UTF-16 code
#: unit's low byte, as murmurhash-js does.
SDK_CASES = [
    ("4aSQ6HYCrSQP2UktnEGq3X", "visitor-1", (0.5, 0.5), 0.9812032978472307, 0.4249753370939231, 0, 1825255174),
    ("4aSQ6HYCrSQP2UktnEGq3X", "a", (0.5, 0.5), 0.9179441027617883, 0.8272279684495246, 1, 3552917070),
    ("44jIanEK8sjH9SoJ5AOa7m", "8f14e45f-ceea-467f-a9f0-a21bd2c3f0a1", (0.34, 0.33, 0.33),
     0.42863904578346734, 0.44846749036770023, 1, 1926153204),
    ("6El21GWHfSq0I81lRza1So", "jörg", (0.0, 1.0), 0.47691191674138234, 0.7135011248089143, 1, 3064463996),
    ("ntExpPromoTest", "訪問者-7", (0.2, 0.3), 0.7237940036514294, 0.5450571695214737, 0, 2341002717),
    ("ntExpPromoTest", "🙂-emoji", (0.1, 0.2, 0.3, 0.4), 0.28395860904919884, 0.7943971268353978, 3, 3411909679),
]  # fmt: skip


@pytest.mark.parametrize(("experience_id", "stable_id", "shares", "traffic", "distribution", "arm", "hash_"), SDK_CASES)
def test_hashes_and_arms_match_the_sdk(
    experience_id: str, stable_id: str, shares: tuple[float, ...], traffic: float, distribution: float, arm: int,
    hash_: int,
) -> None:  # fmt: skip
    assert murmur3_32(f"distribution-{experience_id}-{stable_id}") == hash_
    assert traffic_random(experience_id, stable_id) == traffic  # the same double, not merely close
    assert distribution_random(experience_id, stable_id) == distribution
    assert select_arm(distribution, shares) == arm


def test_murmurhash_js_reference_values() -> None:
    # murmurhash-js 1.0.0 ``murmur3(text, 0)``; "" and the 1-3 byte tails exercise every branch.
    expected = {"": 0, "a": 1009084850, "ab": 2613040991, "abc": 3017643002, "abcd": 1139631978,
                "abcde": 3902511862, "日本語": 450827494, "😀x": 2551825133}  # fmt: skip
    assert {text: murmur3_32(text) for text in expected} == expected


def test_ranges_are_the_sdks_float_sums() -> None:
    # ExperienceMapper.mapExperience({distribution: [0.1, 0.2, 0.3, 0.4]}).distribution, as printed by Node.
    assert distribution_ranges((0.1, 0.2, 0.3, 0.4)) == (
        (0.0, 0.1), (0.1, 0.30000000000000004), (0.30000000000000004, 0.6000000000000001),
        (0.6000000000000001, 1.0),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("random", "shares", "arm"),
    [
        (0.0, (0.0, 1.0), 0),  # [0, 0] holds 0: the one hash of 0 stays on the baseline
        (0.5, (0.5, 0.5), 0),  # both ends inclusive: the first range wins
        (1.0, (0.5, 0.5), 1),
        (0.9, (0.2, 0.3), 0),  # no range: the baseline
        (0.9, (0.5, 0.3, 0.4), 2),  # a share past 1 still holds the rest
    ],
)
def test_select_distribution_edges(random: float, shares: tuple[float, ...], arm: int) -> None:
    assert select_arm(random, shares) == arm


def _experience(key: str, traffic: float, weights: tuple[float, ...] = (0.5, 0.5)) -> Experience:
    return Experience(id=key, key=key, name=key, type="ab_test", variants=tuple(f"{key}-v{i}" for i in range(1, len(weights))),
                      weights=weights, traffic_allocation=traffic, bucketing="ninetailed")  # fmt: skip


def test_traffic_is_strictly_greater_than_the_traffic_random() -> None:
    # traffic random of (4aSQ6HYCrSQP2UktnEGq3X, visitor-1) is 0.9812032978472307 (SDK_CASES)
    at = _experience("4aSQ6HYCrSQP2UktnEGq3X", 0.9812032978472307)
    above = _experience("4aSQ6HYCrSQP2UktnEGq3X", 0.9812032978472308)
    assert assign_ninetailed(at, "visitor-1") is None
    entered = assign_ninetailed(above, "visitor-1")
    assert entered is not None and entered.variant == 0 and entered.propensity == 0.5


def test_outside_the_traffic_the_next_experience_decides() -> None:
    first = _experience("4aSQ6HYCrSQP2UktnEGq3X", 0.5)  # traffic random 0.98: outside
    second = _experience("6El21GWHfSq0I81lRza1So", 1.0, (0.0, 1.0))
    chosen = select_experience([first, second], {}, "visitor-1", {}, now=0.0)
    assert chosen.experience is second and chosen.variant == 1
    assert "Contentful Personalization's bucketing: variant 1" in chosen.reason
    alone = select_experience([first], {}, "visitor-1", {}, now=0.0)
    assert alone.experience is None and alone.variant == 0
    assert alone.reason == "baseline: 4aSQ6HYCrSQP2UktnEGq3X: outside its traffic (50%)"


def test_sticky_assignments_do_not_override_the_sdks_hash() -> None:
    experience = _experience("4aSQ6HYCrSQP2UktnEGq3X", 1.0)
    chosen = select_experience([experience], {}, "a", {"4aSQ6HYCrSQP2UktnEGq3X": 0}, now=0.0)
    assert chosen.variant == 1  # distribution random 0.827 (SDK_CASES): arm 1, whatever was stored
