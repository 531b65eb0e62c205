"""The personalization service: ``decide()`` plus its I/O — one profile read, exposures queued.

This is what the API calls. It owns the two places a decision touches Redis and makes both safe:
the profile read has a deadline (past it, or with Redis down, the decision is made without the
profile and marked ``degraded``; hashing is deterministic, so assignments stay correct), and the
exposures go to a non-blocking writer.

Live state (guardrail pauses, phases, the environment's global holdout share) is not read here: the
runtime refreshes :attr:`Personalizer.live` in the background, and each request sees the snapshot
through a cached :class:`~personalization.decision.live_state.LiveCatalog` (rebuilt only when the
snapshot or the state changes), so it costs no Redis round trip.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import msgspec
from msgspec import Struct

from personalization.decision.decide import EntryRequest, Outcome, decide
from personalization.decision.live_state import LiveCatalog, LiveState
from personalization.decision.scoring import ActiveModel, ActivePolicies
from personalization.plugins import AttributeLookup, Registry
from personalization.seams import Catalog, ExposureSink, ProfileStore
from personalization.store.traits import check_merge, effective_traits, merged_changes
from personalization.types import Profile, TraitValue, Visitor

__all__ = ["Personalized", "Personalizer"]

log = logging.getLogger("vary.personalize")

_NO_SPAN = nullcontext()


def no_span(name: str) -> AbstractContextManager[object]:
    """A decision step's span while tracing is off: one shared no-op (about 0.14 µs a step)."""
    return _NO_SPAN


#: The span of one step (profile read, decide, exposure submit): api/tracing.py sets a real one
#: when the OTEL_* variables turn tracing on.
span: Callable[[str], AbstractContextManager[object]] = no_span


def _as_person(visitor: Visitor, profile: Profile) -> Visitor:
    """A linked id decides as its person (:mod:`personalization.store.identity`): it buckets by the
    person id, and its exposures, sticky assignments and remembered traits go to the person."""
    person: str | None = getattr(profile, "person", None)
    return visitor if person is None else msgspec.structs.replace(visitor, id=person)


class Personalized(Struct, frozen=True, kw_only=True):
    outcome: Outcome
    degraded: bool
    #: The profile the decision read (the person's, for a linked id): a survey asked for beside the
    #: entries (:mod:`personalization.surveys`) reads its visits and assignments without a second read.
    profile: Profile = Profile()


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
        attributes: AttributeLookup | None = None,
        plugins: Registry | None = None,
        global_holdout: float = 0.0,
    ) -> None:
        #: Plugins' attribute sources (never raise, bounded in time); ``None``: no plugin, no cost.
        self._attributes = attributes
        #: The app's plugin registry (extractors, experience types), handed to every ``decide()``.
        self.plugins = plugins if plugins is not None else Registry()
        self._profiles = profiles
        #: A store that enforces the read deadline itself (one timer per batch of reads, not one per
        #: request: :meth:`~personalization.store.profiles.RedisProfileStore.load_within`).
        self._load_within: Callable[[str, float], Awaitable[Profile]] | None = getattr(profiles, "load_within", None)
        #: Stores that remember a request's traits (``None``: stores without memory); looked up once
        #: here rather than per request.
        self._remember: Callable[[str, dict[str, TraitValue]], None] | None = getattr(profiles, "remember_traits", None)
        self._model = model
        self._policies = policies or ActivePolicies()
        self._exposures = exposures
        self._timeout = profile_timeout_s
        self._clock = clock
        #: Decisions made without the profile; the warning is logged at most every 10 s, because
        #: an overloaded Redis makes it happen on every request, and a log line each costs more.
        self.profile_failures = 0
        #: Entries decided, by (experience or "", variant or "holdout", degraded "true"/"false"):
        #: exported by api/metrics.py. Keys come from content, so the map stays small.
        self.decisions: dict[tuple[str, str, str], int] = {}
        self._warned_at = -math.inf
        #: Pauses, phases and the environment's global holdout share; replaced (never mutated) by
        #: the runtime's refresh, so a request sees one state whole.
        self.live = LiveState(global_holdout=global_holdout)
        self._catalog: LiveCatalog | None = None

    def catalog(self, base: Catalog) -> LiveCatalog:
        """``base`` (the snapshot) with the live state laid over it; the same object while neither
        changes (one identity check per request)."""
        cached = self._catalog
        live = self.live
        if cached is None or not cached.matches(base, live):
            cached = self._catalog = LiveCatalog(base, live)
        return cached

    async def _profile(self, visitor: Visitor) -> tuple[Profile, bool]:
        if not visitor.consent.personalization:
            return Profile(), False
        try:
            if self._load_within is not None:
                with span("vary.profile.read"):
                    return await self._load_within(visitor.id, self._timeout), False
            async with asyncio.timeout(self._timeout):  # no extra task per request, unlike wait_for
                with span("vary.profile.read"):
                    return await self._profiles.load(visitor.id), False
        except Exception as exc:  # timeout or Redis down: decide without the profile
            self.profile_failures += 1
            now = time.monotonic()
            if now - self._warned_at >= 10.0:
                self._warned_at = now
                log.warning(
                    "profile read failed (%s): deciding without it (%d such decisions so far)",
                    type(exc).__name__, self.profile_failures,
                )
            return Profile(), True

    async def _with_attributes(self, visitor: Visitor) -> Visitor:
        """The visitor with the plugins' attributes as traits (theirs win: server-side is trusted)."""
        assert self._attributes is not None
        try:
            found = await self._attributes(visitor)
        except Exception as exc:  # the guards already catch; this keeps a decision safe regardless
            log.warning("attribute plugins failed (%s): deciding without them", type(exc).__name__)
            return visitor
        return msgspec.structs.replace(visitor, traits={**visitor.traits, **found}) if found else visitor

    def _with_stored_traits(self, visitor: Visitor, profile: Profile, degraded: bool, record: bool) -> Visitor:
        """The visitor with their remembered traits under the request's (:mod:`personalization.store.
        traits`); the request's traits are remembered (bound checked: :class:`~personalization.store.
        traits.TraitsOverBound` names the trait) when they change what is stored, the profile was
        read and the visitor consented to analytics."""
        if visitor.traits and record and not degraded and visitor.consent.analytics and visitor.consent.personalization:
            check_merge(profile.traits, visitor.traits, where="visitor.traits")
            changes = merged_changes(profile.traits, visitor.traits)
            if changes and self._remember is not None:
                self._remember(visitor.id, changes)
        if not profile.traits:
            return visitor
        return msgspec.structs.replace(visitor, traits=effective_traits(profile.traits, visitor.traits))

    async def personalize(
        self,
        visitor: Visitor,
        entry_ids: Sequence[str],
        catalog: Catalog,
        record: bool = True,
        defer_exposures: bool = False,
    ) -> Personalized:
        """``record=False`` (editors' previews) decides the same way but logs no exposure and
        stores no sticky assignment, so previews never pollute measurement. ``defer_exposures``
        (``"exposures": "on_view"``) stores the sticky assignments but queues no exposure: the caller
        hands the entries' exposures out as signed tokens, recorded when the visitor sees the
        component. The global holdout's exposure has no entry, hence no token: ``on_view`` requests
        are not counted in the global holdout (in neither arm, so its lift stays unbiased)."""
        if self._attributes is not None and visitor.consent.personalization:
            attributed, (profile, degraded) = await asyncio.gather(
                self._with_attributes(visitor), self._profile(visitor)
            )
            visitor, attributed = _as_person(visitor, profile), _as_person(attributed, profile)
            # stored traits < the request's < the plugins' (server-side is trusted); only the
            # request's are remembered
            request = visitor
            visitor = self._with_stored_traits(visitor, profile, degraded, record)
            if attributed is not request:
                visitor = msgspec.structs.replace(visitor, traits={**visitor.traits, **attributed.traits})
        else:
            profile, degraded = await self._profile(visitor)
            visitor = self._with_stored_traits(_as_person(visitor, profile), profile, degraded, record)
        live = self.catalog(catalog)
        with span("vary.decide"):
            outcome = decide(
                visitor,
                profile,
                [EntryRequest(entry_id, live.experiences_for(entry_id)) for entry_id in entry_ids],
                self._model.current,
                self._clock(),
                policies=self._policies.current,
                plugins=self.plugins,
                global_holdout=live.global_holdout,
                shadows=self._policies.shadows,
            )
        if record:
            with span("vary.exposures.submit"):
                self._exposures.submit(() if defer_exposures else outcome.exposures, outcome.assignments)
        tally, flag = self.decisions, "true" if degraded else "false"
        for decision in outcome.decisions:
            key = (decision.experience or "", "holdout" if decision.holdout else str(decision.variant), flag)
            tally[key] = tally.get(key, 0) + 1
        return Personalized(outcome=outcome, degraded=degraded, profile=profile)
