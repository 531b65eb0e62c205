"""Training and evaluation data rebuilt from the logs: the exposure and event streams in Redis.

Every decision Vary serves is an :class:`~personalization.types.Exposure` in ``vary:exposures`` and
every outcome an event in ``vary:events``. This module turns those two streams into the tables the
models learn from, so a model can be (re)trained from what actually happened, with no export step:

* :func:`logged_bandit_from_streams` — a bandit experience's logged decisions (x, a, p, r) for its
  reward model and for off-policy evaluation. The context is
  :func:`~personalization.decision.features.policy_context` of what the exposure recorded: the same function
  serving calls, so training sees exactly the serving features.
* :func:`segment_training_from_events` — a "converted on goal G within N days" segment label per
  visitor, with the features known at the visitor's first exposure.

Both read the streams with :func:`~personalization.models.streams.read_streams`: ``XRANGE`` in
chunks, never the whole stream in one reply. Limits worth knowing are stated on each function.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from redis.asyncio import Redis

from personalization.measurement.events import (
    EVENT_STREAM,
    Conversion,
    Event,
    Purchase,
)
from personalization.measurement.stored_events import STORED_EVENT_DECODER
from personalization.store.exposures import EXPOSURE_STREAM
from personalization.decision.features import FeatureRow, build_features, policy_context
from personalization.models.ope import LoggedBandit
from personalization.models.streams import read_streams
from personalization.seams import FeatureExtractor
from personalization.store.partitions import all_streams
from personalization.types import (
    EXPOSURE_DECODER,
    Experience,
    Exposure,
    Profile,
    Visitor,
)

__all__ = [
    "DEFAULT_WINDOW_S",
    "PURCHASE_GOAL",
    "PROFILE_FEATURES",
    "LoggedDecisions",
    "logged_decisions",
    "logged_bandit_from_streams",
    "segment_training_from_events",
    "segment_label",
]

#: How long after an exposure a conversion still counts as its reward (7 days).
DEFAULT_WINDOW_S = 7 * 86_400.0
#: ``purchase`` events count as a conversion on this goal.
PURCHASE_GOAL = "purchase"
#: Features :func:`~personalization.decision.features.build_features` derives from the visitor's profile —
#: unknown when a row is rebuilt from an exposure, so left absent (see
#: :func:`segment_training_from_events`).
PROFILE_FEATURES: frozenset[str] = frozenset(
    {"visits", "log_page_views", "conversions", "channels_used", "is_new", "days_since_first_seen"}
)
_DAY = 86_400.0


def _conversion_goal(event: Event) -> str | None:
    """The goal an event converts on: a conversion's goal, ``purchase`` for a purchase, else none."""
    if isinstance(event, Conversion):
        return event.goal
    if isinstance(event, Purchase):
        return PURCHASE_GOAL
    return None


async def _conversions(
    redis: Redis,
    visitors: Collection[str],
    goals: Collection[str],
    since_ts: float,
    until_ts: float,
    event_stream: str,
    partitions: int = 1,
) -> dict[str, list[float]]:
    """Sorted conversion times on ``goals`` per visitor of ``visitors``, within the bounds.

    Events may carry a client ``ts`` long before they were received (an app's offline queue, a
    backfill), so the stream is read from ``since_ts`` on with no upper id bound.
    """
    times: dict[str, list[float]] = {}
    streams = all_streams(event_stream, partitions)
    async for event in read_streams(redis, streams, STORED_EVENT_DECODER, since_ts, until_ts, late_s=None):
        if event.visitor_id not in visitors or event.ts is None:
            continue
        if _conversion_goal(event) in goals:
            times.setdefault(event.visitor_id, []).append(event.ts)
    for values in times.values():
        values.sort()
    return times


def _converted(times: list[float] | None, start: float, window_s: float) -> bool:
    """A conversion at ``start ≤ t ≤ start + window_s``."""
    return times is not None and any(start <= t <= start + window_s for t in times)


@dataclass(frozen=True, slots=True)
class LoggedDecisions:
    """A bandit experience's logged decisions, in exposure-time order, with their exposure times."""

    bandit: LoggedBandit
    timestamps: list[float]
    visitor_ids: list[str]


async def _first_exposures(
    redis: Redis,
    keep: Callable[[Exposure], bool],
    since_ts: float | None,
    until_ts: float | None,
    exposure_stream: str,
    partitions: int = 1,
) -> list[Exposure]:
    """Each visitor's earliest exposure among those ``keep`` accepts, sorted by ``ts``.

    Anonymous exposures (``visitor_id`` None: no analytics consent) cannot be joined to outcomes
    and are skipped. "First" means the earliest still in the stream: if the stream is trimmed
    (``MAXLEN``), older exposures are gone.
    """
    first: dict[str, Exposure] = {}
    streams = all_streams(exposure_stream, partitions)
    async for exposure in read_streams(redis, streams, EXPOSURE_DECODER, since_ts, until_ts):
        visitor = exposure.visitor_id
        if visitor is None or not keep(exposure):
            continue
        seen = first.get(visitor)
        if seen is None or exposure.ts < seen.ts:  # the stream is write-ordered, ts nearly so
            first[visitor] = exposure
    return sorted(first.values(), key=lambda e: (e.ts, e.visitor_id or ""))


async def logged_decisions(
    redis: Redis,
    experience: Experience,
    window_s: float = DEFAULT_WINDOW_S,
    goals: Iterable[str] | None = None,
    *,
    since_ts: float | None = None,
    until_ts: float | None = None,
    exposure_stream: str = EXPOSURE_STREAM,
    event_stream: str = EVENT_STREAM,
    partitions: int = 1,
) -> LoggedDecisions:
    """:func:`logged_bandit_from_streams` with the exposure times and visitor ids of the rows."""
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    goal_set = frozenset(experience.goals if goals is None else goals)
    n_actions = len(experience.variants) + 1
    key = experience.key

    def keep(exposure: Exposure) -> bool:
        return exposure.experience == key and 0 <= exposure.variant < n_actions

    exposures = await _first_exposures(redis, keep, since_ts, until_ts, exposure_stream, partitions)
    times: dict[str, list[float]] = {}
    if exposures and goal_set:
        visitors = {e.visitor_id for e in exposures if e.visitor_id is not None}
        times = await _conversions(
            redis, visitors, goal_set, exposures[0].ts, exposures[-1].ts + window_s, event_stream, partitions
        )
    contexts: list[FeatureRow] = []
    rewards: list[float] = []
    for exposure in exposures:
        contexts.append(policy_context(exposure.channel, exposure.country, exposure.device, exposure.segments))
        rewards.append(1.0 if _converted(times.get(exposure.visitor_id or ""), exposure.ts, window_s) else 0.0)
    bandit = LoggedBandit(
        contexts=contexts,
        actions=np.asarray([e.variant for e in exposures], dtype=np.int64),
        propensities=np.asarray([e.propensity for e in exposures], dtype=np.float64),
        rewards=np.asarray(rewards, dtype=np.float64),
        n_actions=n_actions,
    )
    return LoggedDecisions(
        bandit=bandit,
        timestamps=[e.ts for e in exposures],
        visitor_ids=[e.visitor_id or "" for e in exposures],
    )


async def logged_bandit_from_streams(
    redis: Redis,
    experience: Experience,
    window_s: float = DEFAULT_WINDOW_S,
    goals: Iterable[str] | None = None,
    *,
    since_ts: float | None = None,
    until_ts: float | None = None,
    partitions: int = 1,
) -> LoggedBandit:
    """One logged decision (x, a, p, r) per visitor exposed to ``experience``, in exposure-time order.

    * **One row per visitor: the first exposure.** A returning visitor keeps their (sticky) variant,
      and an experience on several entries logs one exposure per entry, so later exposures repeat a
      decision already made; counting them would weight frequent visitors many times over and
      credit one conversion to several rows. Only exposures with a ``visitor_id`` are used (an
      anonymous one cannot be joined to its outcome).
    * x = :func:`~personalization.decision.features.policy_context` of the exposure's channel, country,
      device and segment scores — what serving computed; a = the variant; p = the logged propensity.
    * r = 1 when the visitor converted on one of ``goals`` (default: the experience's goals;
      ``purchase`` events count as goal ``purchase``) at or after the exposure and within
      ``window_s`` seconds of it, else 0. Conversions in the window are credited whatever entry
      caused them, as in measurement; a visitor whose window has not ended yet counts as 0 so far.
    * ``n_actions`` = variants + 1 (control); exposures with a variant outside that range (the
      experience lost a variant since) are skipped.

    ``since_ts`` / ``until_ts`` bound the exposures read (see :func:`~personalization.models.streams.read_stream`); ``partitions``
    is the deployment's stream partition count (every partition is read).
    """
    decisions = await logged_decisions(
        redis, experience, window_s, goals, since_ts=since_ts, until_ts=until_ts, partitions=partitions
    )
    return decisions.bandit


def segment_label(goal: str) -> str:
    """The segment name of "converted on ``goal``": ``converted_<goal>``."""
    return f"converted_{goal}"


def _exposure_features(exposure: Exposure, extractors: Sequence[FeatureExtractor] = ()) -> FeatureRow:
    """The feature row :func:`build_features` gives the context an exposure recorded.

    The channel, device and country go through :func:`build_features` itself (so they are
    normalised exactly as at serving time); the profile-derived features it would add are dropped,
    because an exposure does not record the profile: they are unknown, not zero.
    """
    visitor = Visitor(
        id=exposure.visitor_id or "anonymous",
        channel=exposure.channel,  # type: ignore[arg-type]  # recorded from a validated Visitor
        device=exposure.device,
        country=exposure.country,
    )
    row = build_features(visitor, Profile(), exposure.ts, extractors=extractors)
    return {name: value for name, value in row.items() if name not in PROFILE_FEATURES}


async def segment_training_from_events(
    redis: Redis,
    goal: str,
    days: float,
    now: float | None = None,
    *,
    exposure_stream: str = EXPOSURE_STREAM,
    event_stream: str = EVENT_STREAM,
    partitions: int = 1,
    extractors: Sequence[FeatureExtractor] = (),
) -> tuple[list[FeatureRow], dict[str, list[int]], list[float]]:
    """Training data for the segment ``converted_<goal>``: one row per visitor, from the logs.

    Returns ``(rows, {"converted_<goal>": labels}, timestamps)``, in the layout
    :func:`~personalization.models.segment_model.train_segment_model` takes, ordered by time.

    * The row is the visitor's **first exposure** (any entry, with or without an experience) and
      its timestamp is that exposure's ``ts``.
    * The label is 1 when the visitor converted on ``goal`` (``purchase`` events count as goal
      ``purchase``) at or after that exposure and within ``days`` days of it.

    Limits, by construction:

    * **Only request context is known.** An exposure records channel, country and device (and
      segment scores, which are outputs of the very model being trained, so they are not used). The
      behavioural features built from the visitor's profile (visits, page views, past conversions,
      channels used, days since first seen) were not logged, so they are left **absent** — not
      zero — and the model learns from context alone; at serving time it ignores the profile
      features it never saw. Referrer and UTM tags are not logged either.
    * **Censoring.** Visitors first exposed less than ``days`` before ``now`` (default: the
      current time) have not had their full window yet; they are left out rather than labelled 0.
    * Visitors without analytics consent (``visitor_id`` None) cannot be joined to their outcomes and
      are left out.

    ``extractors``: the plugins' feature extractors (``Registry.extractors``), the ones serving runs.
    """
    if not goal:
        raise ValueError("goal must be a non-empty goal name")
    if not days > 0:
        raise ValueError(f"days must be > 0, got {days!r}")
    window_s = days * _DAY
    cutoff = (time.time() if now is None else now) - window_s
    exposures = await _first_exposures(redis, lambda _: True, None, None, exposure_stream, partitions)
    exposures = [e for e in exposures if e.ts <= cutoff]  # censored: the window has not ended
    rows: list[FeatureRow] = []
    labels: list[int] = []
    timestamps: list[float] = []
    if not exposures:
        return rows, {segment_label(goal): labels}, timestamps
    visitors = {e.visitor_id for e in exposures if e.visitor_id is not None}
    times = await _conversions(
        redis, visitors, {goal}, exposures[0].ts, exposures[-1].ts + window_s, event_stream, partitions
    )
    for exposure in exposures:
        rows.append(_exposure_features(exposure, extractors))
        labels.append(int(_converted(times.get(exposure.visitor_id or ""), exposure.ts, window_s)))
        timestamps.append(exposure.ts)
    return rows, {segment_label(goal): labels}, timestamps
