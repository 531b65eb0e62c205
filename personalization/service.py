"""The personalization service: ``decide()`` plus its I/O — one profile read, exposures queued.

This is what the API calls. It owns the two places a decision touches Redis and makes both safe:
the profile read has a deadline (past it, or with Redis down, the decision is made without the
profile and marked ``degraded``; hashing is deterministic, so assignments stay correct), and the
exposures go to a non-blocking writer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from msgspec import Struct

from personalization.decide import EntryRequest, Outcome, decide
from personalization.exposures import ExposureSink
from personalization.profiles import ProfileStore
from personalization.scoring import ActiveModel, ActivePolicies
from personalization.types import Experience, Profile, Visitor

__all__ = ["Catalog", "Personalized", "Personalizer"]

log = logging.getLogger("vary.personalize")


class Catalog(Protocol):
    """Which experiences hang on an entry. A compiled content snapshot is one."""

    def experiences_for(self, entry_id: str) -> tuple[Experience, ...]: ...


class Personalized(Struct, frozen=True, kw_only=True):
    outcome: Outcome
    degraded: bool


class Personalizer:
    """Decides for one request: read profile → ``decide()`` → queue exposures."""

    def __init__(
        self,
        profiles: ProfileStore,
        model: ActiveModel,
        exposures: ExposureSink,
        profile_timeout_s: float = 0.05,
        clock: Callable[[], float] = time.time,
        policies: ActivePolicies | None = None,
    ) -> None:
        self._profiles = profiles
        self._model = model
        self._policies = policies or ActivePolicies()
        self._exposures = exposures
        self._timeout = profile_timeout_s
        self._clock = clock

    async def _profile(self, visitor: Visitor) -> tuple[Profile, bool]:
        if not visitor.consent.personalization:
            return Profile(), False
        try:
            return await asyncio.wait_for(self._profiles.load(visitor.id), self._timeout), False
        except Exception as exc:  # timeout or Redis down: decide without the profile
            log.warning("profile read failed (%s): deciding without it", type(exc).__name__)
            return Profile(), True

    async def personalize(
        self, visitor: Visitor, entry_ids: Sequence[str], catalog: Catalog, record: bool = True
    ) -> Personalized:
        """``record=False`` (editors' previews) decides the same way but logs no exposure and
        stores no sticky assignment, so previews never pollute measurement."""
        profile, degraded = await self._profile(visitor)
        outcome = decide(
            visitor,
            profile,
            [EntryRequest(entry_id, catalog.experiences_for(entry_id)) for entry_id in entry_ids],
            self._model.current,
            self._clock(),
            policies=self._policies.current,
        )
        if record:
            self._exposures.submit(outcome.exposures, outcome.assignments)
        return Personalized(outcome=outcome, degraded=degraded)
