"""Live state laid over the compiled experiences: guardrail pauses, phases, the global holdout share.

Why an overlay and not a field the decision looks up: content is compiled into immutable
:class:`~personalization.types.Experience` Structs, while pauses and phases change at run time (a
guardrail fires, a marketer resumes, a set-up edit starts a phase). The runtime refreshes a
:class:`LiveState` every few seconds (``VARY_STATE_REFRESH_S``); :class:`LiveCatalog` hands
``decide()`` the snapshot's experiences with ``paused`` and ``phase`` filled in. It is rebuilt only
when the snapshot or the state object changes, fills an entry's experiences on first request, and
returns the compiled tuple itself when nothing applies — so the request path pays one dict lookup,
never a Redis round trip or a Struct rebuild.
"""

from __future__ import annotations

import msgspec

from personalization.decision.global_holdout import global_share
from personalization.seams import Catalog
from personalization.types import Experience

__all__ = ["LiveCatalog", "LiveState", "overlay"]

#: Most entries whose overlaid experiences one catalog remembers (entries beyond it are overlaid per
#: request: correct, only slower); bounded because entry ids come from requests.
MAX_CACHED_ENTRIES = 100_000


class LiveState(msgspec.Struct, frozen=True, kw_only=True):
    """One refresh of the shared state. A new object on every change: catalogs compare by identity.

    ``paused``: experience → variant → reason (current phase only). ``phases``: experience → current
    phase (absent = 1). ``global_holdout``: the environment's share, used when content sets none.
    """

    paused: dict[str, dict[int, str]] = {}
    phases: dict[str, int] = {}
    global_holdout: float = 0.0

    @property
    def empty(self) -> bool:
        """Nothing to lay over any experience."""
        return not self.paused and not any(phase > 1 for phase in self.phases.values())


def overlay(experience: Experience, state: LiveState) -> Experience:
    """``experience`` with its live ``paused`` and ``phase`` (the same object when neither applies)."""
    paused = state.paused.get(experience.key)
    phase = state.phases.get(experience.key, 1)
    if not paused and phase == experience.phase:
        return experience
    return msgspec.structs.replace(experience, paused=dict(paused or {}), phase=phase)


class LiveCatalog:
    """A :class:`~personalization.seams.Catalog` (the content snapshot) seen through a :class:`LiveState`."""

    __slots__ = ("_by_entry", "_plain", "base", "global_holdout", "state")

    def __init__(self, base: Catalog, state: LiveState) -> None:
        self.base = base
        self.state = state
        #: The share in force: the snapshot's (its ``varySettings`` entry) else the environment's.
        self.global_holdout = global_share(getattr(base, "global_holdout", None), state.global_holdout)
        self._by_entry: dict[str, tuple[Experience, ...]] = {}
        self._plain = state.empty

    def matches(self, base: Catalog, state: LiveState) -> bool:
        """Built for this snapshot and this state (identity: both are immutable)."""
        return self.base is base and self.state is state

    def experiences_for(self, entry_id: str) -> tuple[Experience, ...]:
        if self._plain:
            return self.base.experiences_for(entry_id)
        cached = self._by_entry.get(entry_id)
        if cached is None:
            cached = tuple(overlay(experience, self.state) for experience in self.base.experiences_for(entry_id))
            if len(self._by_entry) < MAX_CACHED_ENTRIES:
                self._by_entry[entry_id] = cached
        return cached
