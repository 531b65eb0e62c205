"""The simulator's visitors decided in-process: what ``vary simulate`` would make happen, without HTTP.

``vary simulate`` drives the real server, which is what a demo should do, but a power calculation
needs the *population* numbers (how many of N simulated visitors reach an experience's audience,
their purchase rate) and a test of the planted truth needs thousands of visitors in seconds. Both
come from the same pure pieces the server runs: :func:`personalization.decision.decide.decide` over
the content snapshot and the segment model, for a new visitor (an empty profile, as on a first
visit; the return visit keeps the sticky assignment), then :func:`~personalization.demo.shop.journey_events`
with the variants served. The space's global holdout applies as on the server (a held-out visitor is
in no experience: every entry's baseline). Nothing is stored and no aggregate is written: each visitor comes back as
a :class:`VisitorRun` — where they were assigned and the events they would send.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from personalization.decision.decide import EntryRequest, decide
from personalization.decision.global_holdout import GLOBAL_EXPERIENCE, global_share
from personalization.demo.shop import ENTRIES, Effects, SimVisitor, journey_events, plan_visitor
from personalization.seams import Catalog, SegmentModel
from personalization.types import Profile, Visitor

__all__ = ["VisitorRun", "run_visitors"]

#: Decision time: fixed, so a run does not depend on the clock (every demo experience has started).
_NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class VisitorRun:
    """One simulated visitor: their context, assignment per experience and every event they sent."""

    visitor: SimVisitor
    #: experience → variant served on the first visit (holdout → 0, as the simulator counts it).
    served: dict[str, int]
    #: experiences that put this visitor in their holdout.
    holdout: frozenset[str]
    #: the events of both sessions, landing page view first, in the order they are sent.
    events: list[dict[str, Any]]

    def bought(self) -> bool:
        """Whether the visitor purchased (the ``purchase`` goal converts at most once per visitor)."""
        return any(e["type"] == "purchase" for e in self.events)


def _decide(
    visitor: SimVisitor, channel: str, session: int, requests: Sequence[EntryRequest], model: SegmentModel | None,
    global_holdout: float,
) -> tuple[dict[str, int], frozenset[str]]:
    context = msgspec.convert(visitor.visitor_json(channel, session), Visitor)
    outcome = decide(context, Profile(), requests, model, _NOW, new_id=lambda: "offline",
                     global_holdout=global_holdout)
    served: dict[str, int] = {}
    holdout: set[str] = set()
    for decision in outcome.decisions:
        if decision.experience is None or decision.experience == GLOBAL_EXPERIENCE:
            continue
        served[decision.experience] = 0 if decision.holdout else decision.variant
        if decision.holdout:
            holdout.add(decision.experience)
    return served, frozenset(holdout)


def run_visitors(
    catalog: Catalog, model: SegmentModel | None, visitors: int, *, seed: int = 0, effects: Effects = Effects()
) -> Iterator[VisitorRun]:
    """Visitors ``0 … visitors−1`` of run ``seed``, decided and journeyed as ``vary simulate`` would.

    The same visitor, assignment (a hash of the visitor id) and random draws as the HTTP run with
    the same seed; the return visit keeps the first visit's variants (sticky assignment). The
    global holdout is the catalog's (``global_holdout``, as the snapshot has it; none without).
    """
    requests = [EntryRequest(entry_id, catalog.experiences_for(entry_id)) for entry_id in ENTRIES]
    share = global_share(getattr(catalog, "global_holdout", None), 0.0)
    for index in range(visitors):
        visitor, rng = plan_visitor(seed, index, effects)
        served, holdout = _decide(visitor, visitor.channel, 1, requests, model, share)
        landing: dict[str, Any] = {"type": "page_view", "visitor_id": visitor.id, "session_id": f"{visitor.id}-s1",
                                   "channel": visitor.channel, "touchpoint": "home", "page": "/"}
        first = journey_events(visitor, served, rng, effects)
        events = [landing, *first]
        if visitor.return_channel is not None:
            bought = any(e["type"] == "purchase" for e in first)
            events += journey_events(visitor, served, rng, effects, channel=visitor.return_channel, session=2,
                                     bought_before=bought)
        yield VisitorRun(visitor=visitor, served=served, holdout=holdout, events=events)
