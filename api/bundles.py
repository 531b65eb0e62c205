"""The served decision bundle: built once per state, kept as ready bytes, and the recent ones remembered.

``GET /v1/bundle`` must not rebuild, encode, sign or compress per request: a CDN in front of Vary may
miss often, and an SDK polls. So :class:`BundleService` builds the decision part
(:func:`personalization.decision.bundle.build_bundle`) once per *state* — the snapshot, the live
state (pauses, phases), the segment model and the policies, compared by identity, since each is
replaced whole on change — and the served bytes once per (version, locale, fields): JSON, signature
(Ed25519, over the exact uncompressed bytes), gzip and brotli. A state stays valid until the next
scheduled experience start (then the bundle gains it: a new version).

It also keeps the :class:`~personalization.decision.bundle.BundleDecider` of the last
:data:`RECENT_BUNDLES` versions, so ``POST /v1/exposures`` can recompute a locally made decision from
the bundle it names. A version this worker never built (another worker served it) is found if it is
the current one; an older one is rejected as unknown (the SDK refreshes its bundle).
"""

from __future__ import annotations

import gzip
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import brotli
import msgspec

from api.bundle_signing import BundleSigner
from api.runtime import Runtime
from content import ContentSnapshot
from personalization.decision.bundle import (
    BUNDLE_FORMAT,
    Bundle,
    BundleDecider,
    BundleUnavailable,
    LocalDecision,
    build_bundle,
    check_local,
    entry_exposure,
    global_exposure,
)
from personalization.decision.global_holdout import GLOBAL_EXPERIENCE
from personalization.decision.live_state import LiveCatalog
from personalization.errors import ContentNotLoaded, Unusable
from personalization.types import Exposure

__all__ = ["RECENT_BUNDLES", "BundleService", "CheckedLocal", "ServedBundle", "check_local_decisions"]

#: Bundle versions whose decider is kept for checking local exposures.
RECENT_BUNDLES = 8
#: Served bodies kept (per version × locale × fields); old versions' bodies are dropped first.
MAX_BODIES = 64
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class ServedBundle:
    """One bundle as served: the exact body, its signature and its compressed forms."""

    version: str
    etag: str
    body: bytes
    signature: str
    gzip: bytes
    brotli: bytes
    locale: str


@dataclass(frozen=True, slots=True)
class _State:
    """The decision part of the bundle for one state (snapshot, live state, models)."""

    snapshot: ContentSnapshot
    live: LiveCatalog
    model: object
    policies: object
    #: Valid until this time: the next start of an experience left out for not having started.
    until: float
    bundle: Bundle
    experiences_by_entry: dict[str, tuple[object, ...]]


class BundleService:
    """Builds, caches and remembers bundles for one worker (``app.state.bundles``)."""

    def __init__(self, signer: BundleSigner, recent: int = RECENT_BUNDLES) -> None:
        self.signer = signer
        self._recent: OrderedDict[str, BundleDecider] = OrderedDict()
        self._recent_size = recent
        self._state: _State | None = None
        self._bodies: OrderedDict[tuple[str, str, bool], ServedBundle] = OrderedDict()
        #: Bundles built since start (a state change each): for /metrics and tests.
        self.builds = 0
        #: Local decisions recorded, and rejected by kind (``inconsistent``, ``stale``, ``future``,
        #: ``unknown_version``, ``entry``): shown in ``/ready`` as ``local_exposures``.
        self.local_accepted = 0
        self.local_rejected: dict[str, int] = {}

    # -- the decision part ------------------------------------------------------------------------

    def state(self, runtime: Runtime, now: float) -> _State:
        """The current state's bundle (built only when the state changed or an experience started)."""
        snapshot = runtime.snapshot
        if snapshot is None:
            raise ContentNotLoaded()
        assert runtime.personalizer is not None
        live = runtime.personalizer.catalog(snapshot)
        model = runtime.model.current
        policies = runtime.policies.current
        cached = self._state
        if (
            cached is not None
            and cached.snapshot is snapshot
            and cached.live is live
            and cached.model is model
            and cached.policies is policies
            and now < cached.until
        ):
            return cached
        entry_ids = list(snapshot.entries) + [flag.entry_id for flag in snapshot.flags]
        by_entry: dict[str, tuple[object, ...]] = {}
        for entry_id in entry_ids:
            experiences = live.experiences_for(entry_id)
            if experiences:
                by_entry[entry_id] = experiences
        try:
            bundle = build_bundle(
                content_version=snapshot.version,
                experiences_by_entry=by_entry,  # type: ignore[arg-type]
                model=model,
                policies=policies,
                global_holdout=live.global_holdout,
                now=now,
            )
        except BundleUnavailable as exc:  # a plugin's non-linear model: decide on the server only
            raise Unusable(str(exc)) from exc
        starts = [
            e.starts_at for e in snapshot.experiences.values() if e.starts_at is not None and e.starts_at > now
        ]
        state = _State(
            snapshot=snapshot, live=live, model=model, policies=policies,
            until=min(starts, default=math.inf), bundle=bundle, experiences_by_entry=by_entry,
        )
        self._state = state
        self.builds += 1
        self._remember(bundle)
        return state

    def version(self, runtime: Runtime, now: float) -> str:
        return self.state(runtime, now).bundle.version

    def _remember(self, bundle: Bundle) -> None:
        if bundle.version in self._recent:
            self._recent.move_to_end(bundle.version)
            return
        self._recent[bundle.version] = BundleDecider(bundle)
        while len(self._recent) > self._recent_size:
            self._recent.popitem(last=False)

    def decider(self, version: str, runtime: Runtime, now: float) -> BundleDecider | None:
        """The decider of bundle ``version`` if it is recent (or current), else ``None``."""
        found = self._recent.get(version)
        if found is None and self.version(runtime, now) == version:
            found = self._recent.get(version)
        return found

    # -- the served bytes --------------------------------------------------------------------------

    def served(self, runtime: Runtime, locale: str | None, fields: bool, now: float) -> ServedBundle:
        """The body for (current version, locale, fields): built once, then the same bytes."""
        state = self.state(runtime, now)
        snapshot = state.snapshot
        served_locale = snapshot.locale_for(locale)
        key = (state.bundle.version, served_locale, fields)
        body = self._bodies.get(key)
        if body is not None:
            self._bodies.move_to_end(key)
            return body
        bundle = msgspec.structs.replace(state.bundle, locale=served_locale)
        if fields:
            rebuilt = build_bundle(
                content_version=snapshot.version,
                experiences_by_entry=state.experiences_by_entry,  # type: ignore[arg-type]
                model=state.model,  # type: ignore[arg-type]
                policies=state.policies,  # type: ignore[arg-type]
                global_holdout=state.live.global_holdout,
                now=now,
                locale=served_locale,
                fields=lambda entry_id: (
                    snapshot.fields(entry_id, served_locale) if snapshot.has_entry(entry_id) else None
                ),
            )
            bundle = msgspec.structs.replace(rebuilt, version=state.bundle.version, created_at=state.bundle.created_at)
        plain = _ENCODER.encode(bundle)
        raw = self.signer.seal(plain, bundle.version, BUNDLE_FORMAT)
        served = ServedBundle(
            version=bundle.version,
            etag=f'"{bundle.version}.{served_locale}.{"f" if fields else "n"}{".e" if self.signer.encrypts else ""}"',
            body=raw,
            signature=self.signer.sign(raw),
            gzip=gzip.compress(raw, 9, mtime=0),
            brotli=brotli.compress(raw),
            locale=served_locale,
        )
        self._bodies[key] = served
        # Bodies of superseded versions go first; the cache stays bounded either way.
        for old in [k for k in self._bodies if k[0] != bundle.version]:
            del self._bodies[old]
        while len(self._bodies) > MAX_BODIES:
            self._bodies.popitem(last=False)
        return served


# -- decisions made locally, sent back as exposures ---------------------------------------------------

#: How old a local decision may be when it arrives (a tab left open, a beacon sent on unload).
MAX_LOCAL_AGE_S = 24 * 3600.0
#: How far ahead of the server's clock a device's clock may be.
MAX_CLOCK_SKEW_S = 300.0


@dataclass(frozen=True, slots=True)
class CheckedLocal:
    """The local decisions of one batch: recomputed exposures (with index) and rejections.

    ``derived``: the ``_global`` exposure of each local ``decide()`` call an accepted entry decision came
    from, as ``/v1/personalize`` logs it (one id per call: recorded once however many of its decisions,
    in however many batches, arrive). Not items of the batch, so not in ``accepted``."""

    accepted: list[tuple[int, Exposure]]
    assignments: list[tuple[str, str, int]]
    rejected: list[tuple[int, str]]
    derived: list[Exposure]


def check_local_decisions(
    service: BundleService, runtime: Runtime, decisions: Sequence[LocalDecision], now: float
) -> CheckedLocal:
    """Recompute each decision from the bundle it names (:func:`~personalization.decision.bundle.
    check_local`); count accepted and rejected ones on ``service``. An accepted ``_global`` item records
    the recomputed ``_global`` exposure itself (same id as the derived one: never twice)."""
    accepted: list[tuple[int, Exposure]] = []
    assignments: list[tuple[str, str, int]] = []
    rejected: list[tuple[int, str]] = []
    derived: dict[str, Exposure] = {}
    for index, decision in enumerate(decisions):
        why: str | None = None
        if decision.ts > now + MAX_CLOCK_SKEW_S:
            why = "future: decided after the server's clock (more than 5 minutes ahead)"
        elif decision.ts < now - MAX_LOCAL_AGE_S:
            why = "stale: decided more than 24 hours ago"
        else:
            decider = service.decider(decision.bundle_version, runtime, now)
            if decider is None:
                why = (
                    f"unknown bundle version {decision.bundle_version!r}: not one of the recent bundles; "
                    "fetch the current bundle"
                )
            elif decision.entry_id in decider.bundle.server_only:
                why = f"entry {decision.entry_id!r} is decided on the server only (a plugin's experience type)"
            else:
                outcome, why = check_local(decider, decision)
                if outcome is not None:
                    made = global_exposure(outcome)
                    if decision.experience == GLOBAL_EXPERIENCE and made is not None:  # its arm matched
                        accepted.append((index, made))
                    else:
                        accepted.append((index, entry_exposure(outcome)))
                        assignments.extend(outcome.assignments)
                        if made is not None:
                            derived.setdefault(made.id, made)
        if why is not None:
            rejected.append((index, why))
            kind = why.split(":", 1)[0].split(" ", 1)[0] if not why.startswith("unknown") else "unknown_version"
            service.local_rejected[kind] = service.local_rejected.get(kind, 0) + 1
    service.local_accepted += len(accepted)
    return CheckedLocal(accepted=accepted, assignments=assignments, rejected=rejected, derived=list(derived.values()))
