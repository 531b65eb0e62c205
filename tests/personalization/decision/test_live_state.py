"""Pauses and phases as decide() sees them through the live overlay (pure: no Redis)."""

from __future__ import annotations

from personalization.decision.decide import EntryRequest, decide
from personalization.decision.live_state import LiveCatalog, LiveState, overlay
from personalization.types import Experience, Profile, Visitor

AB = Experience(id="e1", key="hero", name="Hero", type="ab_test", variants=("heroB",), weights=(0.0, 1.0))
REASON = "paused: guardrail csat harmed (CSAT 3.1 vs 4.2)"


class Snapshot:
    """The smallest Catalog: one entry with the experience."""

    global_holdout: float | None = None

    def __init__(self, *experiences: Experience) -> None:
        self._experiences = experiences
        self.calls = 0

    def experiences_for(self, entry_id: str) -> tuple[Experience, ...]:
        self.calls += 1
        return self._experiences if entry_id == "hero" else ()


def _ids() -> object:
    counter = iter(range(1000))
    return lambda: f"x{next(counter)}"


def _decide(experience: Experience, profile: Profile | None = None):
    return decide(Visitor(id="v1"), profile or Profile(), [EntryRequest("hero", (experience,))], None, now=1.0, new_id=_ids())


def test_a_paused_variant_serves_the_baseline_and_keeps_the_assignment() -> None:
    paused = overlay(AB, LiveState(paused={"hero": {1: REASON}}))
    outcome = _decide(paused)
    (decision,) = outcome.decisions
    (exposure,) = outcome.exposures
    assert decision.variant_entry_id == "hero" and decision.reason.startswith(REASON)
    assert "variant 1 (heroB)" in decision.reason  # the kept assignment is named
    # intent to treat: the decision and exposure keep variant 1, flagged neither control nor holdout
    assert (decision.variant, decision.is_control, decision.holdout) == (1, False, False)
    assert (exposure.variant, exposure.variant_entry_id, exposure.experience) == (1, "hero", "hero")
    assert outcome.assignments == [("v1", "hero", 1)]
    # unpaused, the same visitor is served the variant entry
    assert _decide(AB).decisions[0].variant_entry_id == "heroB"


def test_a_pause_of_another_variant_changes_nothing() -> None:
    three = Experience(
        id="e2", key="hero", name="Hero", type="ab_test", variants=("heroB", "heroC"), weights=(0.0, 1.0, 0.0)
    )
    decision = _decide(overlay(three, LiveState(paused={"hero": {2: REASON}}))).decisions[0]
    assert decision.variant_entry_id == "heroB" and REASON not in decision.reason


def test_phase_two_stamps_exposures_and_keeps_sticky_assignments_apart() -> None:
    phase2 = overlay(AB, LiveState(phases={"hero": 2}))
    assert phase2.phase == 2
    outcome = _decide(phase2, Profile(assignments={"hero": 0}))  # phase 1's sticky control is not phase 2's
    assert outcome.decisions[0].variant == 1 and outcome.exposures[0].phase == 2
    assert outcome.assignments == [("v1", "hero@p2", 1)]
    stuck = _decide(phase2, Profile(assignments={"hero@p2": 0}))
    assert stuck.decisions[0].variant == 0 and stuck.decisions[0].reason.endswith("assigned on an earlier visit")
    assert stuck.assignments == [] and stuck.exposures[0].phase == 2
    assert _decide(AB, Profile(assignments={"hero": 0})).exposures[0].phase == 1


def test_the_catalog_overlays_once_and_passes_the_compiled_tuple_when_nothing_applies() -> None:
    snapshot = Snapshot(AB)
    plain = LiveCatalog(snapshot, LiveState())
    assert plain.experiences_for("hero") is snapshot._experiences
    live = LiveCatalog(snapshot, LiveState(paused={"hero": {1: REASON}}, phases={"hero": 3}))
    first = live.experiences_for("hero")
    assert first[0].paused == {1: REASON} and first[0].phase == 3
    calls = snapshot.calls
    assert live.experiences_for("hero") is first and snapshot.calls == calls  # cached per entry
    assert live.experiences_for("other") == ()
    assert live.matches(snapshot, live.state) and not live.matches(Snapshot(AB), live.state)


def test_the_catalog_prefers_the_content_share_of_the_global_holdout() -> None:
    snapshot = Snapshot(AB)
    assert LiveCatalog(snapshot, LiveState(global_holdout=0.1)).global_holdout == 0.1
    snapshot.global_holdout = 0.05
    assert LiveCatalog(snapshot, LiveState(global_holdout=0.1)).global_holdout == 0.05
    snapshot.global_holdout = 0.9  # never more than half of the visitors
    assert LiveCatalog(snapshot, LiveState()).global_holdout == 0.5
