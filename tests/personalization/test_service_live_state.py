"""Pauses, phases and the global holdout through the Personalizer, with the live state read from a
real Valkey by the follower the runtime runs (``personalization/store/live_state.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import msgspec
from redis.asyncio import Redis

from personalization.decision.global_holdout import GLOBAL_EXPERIENCE, in_global_holdout
from personalization.decision.scoring import ActiveModel
from personalization.service import Personalizer
from personalization.store.live_state import LiveStateFollower
from personalization.store.pauses import pause_variant, resume
from personalization.store.profiles import RedisProfileStore
from personalization.types import Experience, Exposure, Profile, Visitor

HERO = Experience(
    id="e1", key="hero", name="Hero", type="ab_test", variants=("heroB",), weights=(0.0, 1.0), updated_at=100.0,
)
REASON = "paused: guardrail csat harmed (CSAT 3.1 vs 4.2)"


class Snapshot:
    """A content snapshot as the Personalizer and the follower see it."""

    def __init__(self, version: str, experience: Experience, global_holdout: float | None = None) -> None:
        self.version = version
        self.experiences = {experience.key: experience}
        self.global_holdout = global_holdout

    def experiences_for(self, entry_id: str) -> tuple[Experience, ...]:
        return (self.experiences["hero"],) if entry_id == "hero" else ()


class Collected:
    """The exposure sink: what would be written."""

    def __init__(self) -> None:
        self.exposures: list[Exposure] = []
        self.assignments: list[tuple[str, str, int]] = []

    def submit(self, exposures: Iterable[Exposure], assignments: Iterable[tuple[str, str, int]] = ()) -> None:
        self.exposures.extend(exposures)
        self.assignments.extend(assignments)


def test_pause_resume_and_a_new_phase_reach_decisions_through_the_follower(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        sink = Collected()
        personalizer = Personalizer(RedisProfileStore(redis), ActiveModel(), sink)
        snapshot = Snapshot("v1", HERO)
        served: list[Snapshot] = [snapshot]

        def apply(state: object) -> None:
            personalizer.live = state  # type: ignore[assignment]

        follower = LiveStateFollower(
            redis, lambda: (served[0].version, served[0].experiences.values()), apply, clock=lambda: 1000.0
        )
        await follower.refresh()
        first = await personalizer.personalize(Visitor(id="v1"), ["hero"], snapshot)
        assert first.outcome.decisions[0].variant_entry_id == "heroB"
        assert personalizer.catalog(snapshot) is personalizer.catalog(snapshot)  # no rebuild per request

        assert await pause_variant(redis, "hero", 1, REASON, "csat", 1, 1001.0)
        await follower.refresh()
        paused = (await personalizer.personalize(Visitor(id="v2"), ["hero"], snapshot)).outcome
        assert paused.decisions[0].variant_entry_id == "hero" and paused.decisions[0].reason.startswith(REASON)
        assert paused.exposures[0].variant == 1 and sink.exposures[-1].variant == 1

        assert await resume(redis, "hero", 1) == [1]
        await follower.refresh()
        again = (await personalizer.personalize(Visitor(id="v2"), ["hero"], snapshot)).outcome
        assert again.decisions[0].variant_entry_id == "heroB"

        # a weight edit in a newer snapshot starts phase 2: exposures stamped, sticky kept apart
        edited = Snapshot("v2", msgspec.structs.replace(HERO, weights=(1.0, 0.0), updated_at=200.0))
        served[0] = edited
        state = await follower.refresh()
        assert state.phases == {"hero": 2}
        phase2 = (await personalizer.personalize(Visitor(id="v3"), ["hero"], edited)).outcome
        assert phase2.exposures[0].phase == 2 and phase2.decisions[0].variant == 0
        assert sink.assignments[-1] == ("v3", "hero@p2", 0)
        await redis.aclose()

    asyncio.run(body())


def test_the_global_holdout_share_comes_from_content_and_on_view_logs_nothing_at_decision() -> None:
    async def body() -> None:
        sink = Collected()

        class NoProfiles:
            async def load(self, visitor_id: str) -> Profile:
                return Profile()

        personalizer = Personalizer(NoProfiles(), ActiveModel(), sink, global_holdout=0.0)  # type: ignore[arg-type]
        snapshot = Snapshot("v1", HERO, global_holdout=0.2)
        held_out = next(f"v{i}" for i in range(1000) if in_global_holdout(f"v{i}", 0.2))
        result = await personalizer.personalize(Visitor(id=held_out), ["hero"], snapshot)
        assert result.outcome.decisions[0].variant_entry_id == "hero"
        assert [(e.experience, e.variant, e.holdout) for e in sink.exposures] == [
            (None, 0, False), (GLOBAL_EXPERIENCE, 0, True),
        ]
        # on_view: nothing at decision time, the global exposure included (it has no entry, no token)
        await personalizer.personalize(Visitor(id=held_out), ["hero"], snapshot, defer_exposures=True)
        assert len(sink.exposures) == 2

    asyncio.run(body())
