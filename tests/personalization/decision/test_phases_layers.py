"""A layer or its range is part of assignment: changing it starts a new phase (and says so)."""

from __future__ import annotations

from msgspec import structs

from personalization.decision.phases import assignment_fingerprint, describe_changes
from personalization.types import Experience


def _experience(**changes: object) -> Experience:
    base = Experience(id="e1", key="hero", name="Hero", type="ab_test", variants=("v1",), weights=(0.5, 0.5))
    return structs.replace(base, **changes)


def test_fingerprint_is_unchanged_without_a_layer_and_changes_with_one() -> None:
    plain = _experience()
    assert assignment_fingerprint(plain) == assignment_fingerprint(_experience(name="Renamed"))
    layered = _experience(layer="banners", layer_range=(0.0, 0.5))
    moved = _experience(layer="banners", layer_range=(0.5, 1.0))
    assert len({assignment_fingerprint(e) for e in (plain, layered, moved)}) == 3
    assert describe_changes(plain, layered) == ["layer none → banners [0%, 50%)"]
    assert describe_changes(layered, moved) == ["layer banners [0%, 50%) → banners [50%, 100%)"]


def test_bucketing_change_is_a_new_phase() -> None:
    ninetailed = _experience(bucketing="ninetailed")
    assert assignment_fingerprint(ninetailed) != assignment_fingerprint(_experience())
    assert describe_changes(_experience(), ninetailed) == ["bucketing growthbook → ninetailed"]
