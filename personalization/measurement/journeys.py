"""The customer journey map: where visitors reach, leave and linger in a journey, per variant.

CX and UX people read one picture together — the stages of a journey (find → evaluate → decide →
buy → engage), how many visitors reach each, where they drop off, how long they take, what the
touchpoints of a stage feel like (UX) and what visitors say there (CX). With an experience chosen,
the same picture per variant shows *where* in the journey a variant helped or hurt, which a single
conversion rate cannot.

:func:`journey_map` rebuilds it from the logs (``vary:events``, and ``vary:exposures`` for the
variant), read with :func:`~personalization.models.logged.read_stream` for a bounded period, so it needs no
aggregate of its own and works for any journey defined after the fact. Definitions:

* **Visitor, variant.** With an experience, a visitor's variant is decided by their *first*
  exposure to it in the period (``"0"`` control, ``"1"``…, ``"holdout"`` for holdout visitors);
  visitors with events but no such exposure are left out (counted in ``unexposed_visitors``), as are
  exposures of a variant the experience no longer has. A visitor's whole journey in the period
  counts for their variant, including events before the exposure (the stage that led to it).
  Without an experience everyone is in ``"all"``. ``visitors`` is exposed visitors (with an
  experience — also those with no event) or visitors with any event (without one).
* **Reaching a stage.** A visitor reaches a stage with at least one event the stage matches
  (:meth:`~content.journeys.JourneyStage.matches`: touchpoint and type). Stages are ordered but not
  gates: ``reached`` counts everyone who got there, ``reached_after_previous`` those who got there at
  or after their first arrival at the previous stage.
* **Drop-off** of stage k: the share of visitors reaching k with no event of stage k+1 at or after
  their first arrival at k (Wilson interval); ``continued`` is the others (= the next stage's
  ``reached_after_previous``). **Time to next**: the median, over ``continued`` visitors, of the
  seconds from their first arrival at k to their first stage-k+1 event after it. Both are ``None``
  for the last stage.
* **UX** of a stage is measured on every event at its touchpoints (any event, when it lists none),
  whatever the type: task success (Wilson), abandonment = abandonments / (tasks + abandonments) as
  in experiment results, click-through = visitors who clicked there / visitors with any event
  there, median task time. ``ux_by_touchpoint`` splits it per touchpoint the stage names.
* **CX**: NPS, CSAT and CES (``ux_cx`` formulas) of surveys at the stage's touchpoints.
* **Channels**: per channel, the stage-matching events and the visitors who had one there
  (``"unknown"`` when an event named no channel).
* **Paths.** Each visitor's events with a touchpoint, in time order, become steps
  ``"<channel>:<touchpoint>"`` with consecutive repeats collapsed. ``paths`` are the 10 most common
  three-step runs (a visitor with fewer steps contributes their whole sequence, so bounces show);
  ``transitions`` the 10 most common consecutive step pairs. Both count *visitors* — a visitor who
  loops counts once per distinct path — so a few heavy users cannot dominate.

Bounds: the period defaults to the last 30 days; at most ``max_events`` events (and as many
exposures) are read, oldest first, and ``truncated`` says when the cap cut the period short. Events
written more than a day after their own ``ts`` (a late backfill) are outside the scanned id range.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from msgspec import Struct
from redis.asyncio import Redis

from personalization.measurement.events import (
    EVENT_DECODER,
    EVENT_STREAM,
    Abandonment,
    Click,
    Event,
    PageView,
    Survey,
    Task,
)
from personalization.store.exposures import EXPOSURE_STREAM
from personalization.models.logged import read_streams
from personalization.store.partitions import all_streams
from personalization.measurement.stats import wilson_interval
from personalization.types import EXPOSURE_DECODER, Experience
from personalization.measurement.ux_cx import (
    MetricEstimate,
    abandonment_rate,
    ces_from_histogram,
    click_through_rate,
    csat_from_histogram,
    nps_from_histogram,
    task_success,
)

if TYPE_CHECKING:
    from content.journeys import Journey, JourneyStage

__all__ = [
    "DEFAULT_PERIOD_S",
    "DEFAULT_MAX_EVENTS",
    "TOP_PATHS",
    "ALL_VISITORS",
    "HOLDOUT",
    "StageChannel",
    "StageUx",
    "StageCx",
    "StageReport",
    "PathCount",
    "TransitionCount",
    "VariantJourney",
    "StageInfo",
    "JourneyMap",
    "journey_map",
]

#: The period read when none is given: the last 30 days.
DEFAULT_PERIOD_S = 30 * 86_400.0
#: Events (and, separately, exposures) read at most; beyond it the map says ``truncated``.
DEFAULT_MAX_EVENTS = 500_000
#: How many paths and transitions are reported.
TOP_PATHS = 10
#: The one group when no experience is chosen.
ALL_VISITORS = "all"
#: The group of an experience's holdout visitors.
HOLDOUT = "holdout"
_UNKNOWN_CHANNEL = "unknown"
_PATH_LENGTH = 3
_DETAIL = {"conversion": "goal", "task": "name", "survey": "metric"}
_SURVEY_METRICS = ("nps", "csat", "ces")
#: One visitor's events: (ts, the stages it matches as a bit mask, its path step or None).
Timeline = list[tuple[float, int, str | None]]


class StageChannel(Struct, frozen=True, kw_only=True):
    """One channel at one stage: visitors with a stage-matching event there, and those events."""

    visitors: int
    events: int


class StageUx(Struct, frozen=True, kw_only=True):
    """UX at a stage's touchpoints (see the module doc for each definition)."""

    task_success: MetricEstimate
    abandonment_rate: MetricEstimate
    click_through_rate: MetricEstimate
    median_task_ms: float | None
    visitors: int
    page_views: int
    clicks: int
    tasks: int
    abandonments: int


class StageCx(Struct, frozen=True, kw_only=True):
    """CX scores of surveys answered at a stage's touchpoints."""

    nps: MetricEstimate
    csat: MetricEstimate
    ces: MetricEstimate


class StageReport(Struct, frozen=True, kw_only=True):
    """One stage for one variant. ``share`` = reached / the variant's visitors (Wilson)."""

    key: str
    name: str
    reached: int
    share: MetricEstimate
    reached_after_previous: int
    continued: int | None
    drop_off: MetricEstimate | None
    median_s_to_next: float | None
    channels: dict[str, StageChannel]
    ux: StageUx
    ux_by_touchpoint: dict[str, StageUx]
    cx: StageCx


class PathCount(Struct, frozen=True, kw_only=True):
    """Up to three consecutive steps (``channel:touchpoint``) and how many visitors took them."""

    steps: tuple[str, ...]
    visitors: int


class TransitionCount(Struct, frozen=True, kw_only=True):
    """One step followed directly by another, and how many visitors made that move."""

    from_step: str
    to_step: str
    visitors: int


class VariantJourney(Struct, frozen=True, kw_only=True):
    """The journey map of one variant (``"all"`` without an experience). ``label`` is ``control``,
    the variant's entry id, ``holdout`` or ``all visitors``."""

    variant: str
    label: str
    visitors: int
    stages: list[StageReport]
    paths: list[PathCount]
    transitions: list[TransitionCount]


class StageInfo(Struct, frozen=True, kw_only=True):
    """A stage as defined in Contentful, so a reader can label the map without the content."""

    key: str
    name: str
    touchpoints: tuple[str, ...]
    event_types: tuple[str, ...]


class JourneyMap(Struct, frozen=True, kw_only=True):
    """Everything ``GET /v1/journeys/{key}`` returns. ``since`` / ``until`` are Unix seconds;
    ``variants`` are keyed ``"all"`` or ``"0"``, ``"1"``…, ``"holdout"``."""

    journey: str
    name: str
    experience: str | None
    since: float
    until: float
    stages: list[StageInfo]
    variants: dict[str, VariantJourney]
    unexposed_visitors: int
    events_read: int
    exposures_read: int
    max_events: int
    truncated: bool


# ------------------------------------------------------------------------------------ accumulation


@dataclass(slots=True)
class _Touchpoint:
    """Raw UX/CX counts of one group at one touchpoint."""

    visitors: set[str] = field(default_factory=set)
    clickers: set[str] = field(default_factory=set)
    page_views: int = 0
    clicks: int = 0
    tasks: int = 0
    task_ok: int = 0
    durations: list[float] = field(default_factory=list)
    abandonments: int = 0
    surveys: dict[str, Counter[int]] = field(default_factory=lambda: {m: Counter() for m in _SURVEY_METRICS})

    def add(self, event: Event) -> None:
        self.visitors.add(event.visitor_id)
        if isinstance(event, PageView):
            self.page_views += 1
        elif isinstance(event, Click):
            self.clicks += 1
            self.clickers.add(event.visitor_id)
        elif isinstance(event, Task):
            self.tasks += 1
            self.task_ok += int(event.success)
            if event.duration_ms:
                self.durations.append(float(event.duration_ms))
        elif isinstance(event, Abandonment):
            self.abandonments += 1
        elif isinstance(event, Survey) and event.metric in self.surveys and event.score is not None:
            self.surveys[event.metric][math.floor(event.score + 0.5)] += 1


@dataclass(slots=True)
class _Group:
    """Everything read for one variant: timelines per visitor, touchpoint counts, stage channels."""

    stage_count: int
    #: visitor → their events in stream order.
    timelines: dict[str, Timeline] = field(default_factory=dict)
    touchpoints: dict[str | None, _Touchpoint] = field(default_factory=dict)
    #: per stage: channel → [events, visitors].
    channels: list[dict[str, tuple[int, set[str]]]] = field(default_factory=list)
    exposed: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.channels = [{} for _ in range(self.stage_count)]


def _event_type(event: Event) -> str:
    return type(event).__struct_config__.tag  # type: ignore[return-value]  # every Event is tagged


def _detail(event: Event, event_type: str) -> str | None:
    name = _DETAIL.get(event_type)
    value = getattr(event, name, None) if name else None
    return value if isinstance(value, str) else None


# ------------------------------------------------------------------------------------ statistics


def _share(successes: int, n: int) -> MetricEstimate:
    if n == 0:
        return MetricEstimate(score=None, interval=None, n=0)
    return MetricEstimate(score=successes / n, interval=wilson_interval(successes, n), n=n)


def _ux(parts: Iterable[_Touchpoint]) -> StageUx:
    visitors: set[str] = set()
    clickers: set[str] = set()
    page_views = clicks = tasks = task_ok = abandonments = 0
    durations: list[float] = []
    for part in parts:
        visitors |= part.visitors
        clickers |= part.clickers
        page_views += part.page_views
        clicks += part.clicks
        tasks += part.tasks
        task_ok += part.task_ok
        abandonments += part.abandonments
        durations.extend(part.durations)
    return StageUx(
        task_success=task_success(task_ok, tasks),
        abandonment_rate=abandonment_rate(tasks + abandonments, tasks),
        click_through_rate=click_through_rate(len(clickers), len(visitors)),
        median_task_ms=float(statistics.median(durations)) if durations else None,
        visitors=len(visitors),
        page_views=page_views,
        clicks=clicks,
        tasks=tasks,
        abandonments=abandonments,
    )


def _cx(parts: Iterable[_Touchpoint]) -> StageCx:
    hist: dict[str, Counter[int]] = {m: Counter() for m in _SURVEY_METRICS}
    for part in parts:
        for metric in _SURVEY_METRICS:
            hist[metric].update(part.surveys[metric])
    return StageCx(
        nps=nps_from_histogram(hist["nps"]),
        csat=csat_from_histogram(hist["csat"]),
        ces=ces_from_histogram(hist["ces"]),
    )


def _top_paths(timelines: dict[str, Timeline]) -> tuple[list[PathCount], list[TransitionCount]]:
    paths: Counter[tuple[str, ...]] = Counter()
    transitions: Counter[tuple[str, str]] = Counter()
    for timeline in timelines.values():
        steps: list[str] = []
        for _, _, step in timeline:
            if step is not None and (not steps or steps[-1] != step):
                steps.append(step)
        if not steps:
            continue
        if len(steps) < _PATH_LENGTH:
            paths[tuple(steps)] += 1
        else:
            paths.update({tuple(steps[i : i + _PATH_LENGTH]) for i in range(len(steps) - _PATH_LENGTH + 1)})
        transitions.update({(a, b) for a, b in zip(steps, steps[1:])})
    ranked_paths = sorted(paths.items(), key=lambda item: (-item[1], item[0]))[:TOP_PATHS]
    ranked_moves = sorted(transitions.items(), key=lambda item: (-item[1], item[0]))[:TOP_PATHS]
    return (
        [PathCount(steps=steps, visitors=n) for steps, n in ranked_paths],
        [TransitionCount(from_step=a, to_step=b, visitors=n) for (a, b), n in ranked_moves],
    )


def _variant_journey(
    variant: str, label: str, group: _Group, stages: tuple[JourneyStage, ...], with_experience: bool
) -> VariantJourney:
    count = len(stages)
    firsts: list[dict[str, float]] = [{} for _ in range(count)]
    continued: list[int] = [0] * count
    to_next: list[list[float]] = [[] for _ in range(count)]
    for visitor, timeline in group.timelines.items():
        timeline.sort(key=lambda item: item[0])  # stable: equal times keep stream order
        first: list[float | None] = [None] * count
        for ts, mask, _ in timeline:
            for k in range(count):
                if mask >> k & 1 and first[k] is None:
                    first[k] = ts
        for k in range(count):
            start = first[k]
            if start is None:
                continue
            firsts[k][visitor] = start
            if k + 1 < count:
                bit = 1 << (k + 1)
                arrival = next((ts for ts, mask, _ in timeline if mask & bit and ts >= start), None)
                if arrival is not None:
                    continued[k] += 1
                    to_next[k].append(arrival - start)
    visitors = len(group.exposed) if with_experience else len(group.timelines)
    reports = []
    for k, stage in enumerate(stages):
        reached = len(firsts[k])
        last = k + 1 == count
        named = [group.touchpoints[t] for t in stage.touchpoints if t in group.touchpoints]
        parts = named if stage.touchpoints else list(group.touchpoints.values())
        reports.append(
            StageReport(
                key=stage.key,
                name=stage.name,
                reached=reached,
                share=_share(reached, visitors),
                reached_after_previous=reached if k == 0 else continued[k - 1],
                continued=None if last else continued[k],
                drop_off=None if last else _share(reached - continued[k], reached),
                median_s_to_next=float(statistics.median(to_next[k])) if to_next[k] else None,
                channels={
                    channel: StageChannel(visitors=len(who), events=n)
                    for channel, (n, who) in sorted(group.channels[k].items())
                },
                ux=_ux(parts),
                ux_by_touchpoint={t: _ux([group.touchpoints[t]]) for t in stage.touchpoints
                                  if t in group.touchpoints},
                cx=_cx(parts),
            )
        )
    paths, transitions = _top_paths(group.timelines)
    return VariantJourney(
        variant=variant, label=label, visitors=visitors, stages=reports, paths=paths, transitions=transitions
    )


# ------------------------------------------------------------------------------------ entry point


async def _assignments(
    redis: Redis, experience: Experience, since_ts: float, until_ts: float, cap: int, partitions: int
) -> tuple[dict[str, str], int, bool]:
    """Visitor → variant key from each visitor's first exposure to the experience in the period."""
    arms = len(experience.variants) + 1
    first: dict[str, tuple[float, str]] = {}
    read = 0
    truncated = False
    streams = all_streams(EXPOSURE_STREAM, partitions)
    async with aclosing(read_streams(redis, streams, EXPOSURE_DECODER, since_ts, until_ts)) as stream:
        async for exposure in stream:
            if read >= cap:
                truncated = True
                break
            read += 1
            visitor = exposure.visitor_id
            if visitor is None or exposure.experience != experience.key:
                continue
            if not 0 <= exposure.variant < arms:  # a variant the experience no longer has
                continue
            seen = first.get(visitor)
            if seen is None or exposure.ts < seen[0]:
                first[visitor] = (exposure.ts, HOLDOUT if exposure.holdout else str(exposure.variant))
    return {visitor: variant for visitor, (_, variant) in first.items()}, read, truncated


async def journey_map(
    redis: Redis,
    journey: Journey,
    *,
    experience: Experience | None = None,
    since_ts: float | None = None,
    until_ts: float | None = None,
    max_events: int = DEFAULT_MAX_EVENTS,
    partitions: int = 1,
) -> JourneyMap:
    """The journey map of ``journey`` for the period, per variant of ``experience`` (or for all).

    ``until_ts`` defaults to now and ``since_ts`` to 30 days before it; both bound the records'
    own ``ts`` (inclusive). At most ``max_events`` events and as many exposures are read (oldest
    first); ``truncated`` is then true and the map covers the start of the period only. See the
    module doc for every definition. ``partitions``: the deployment's stream partition count; all
    partitions are read, merged in stream order.
    """
    if max_events < 1:
        raise ValueError(f"max_events must be ≥ 1, got {max_events}")
    until = time.time() if until_ts is None else until_ts
    since = until - DEFAULT_PERIOD_S if since_ts is None else since_ts
    if not since < until:
        raise ValueError(f"the period is empty: since ({since}) is not before until ({until})")
    stages = journey.stages
    count = len(stages)

    groups: dict[str, _Group] = {}
    labels: dict[str, str] = {}
    assignment: dict[str, str] = {}
    exposures_read = 0
    truncated = False
    if experience is None:
        groups[ALL_VISITORS] = _Group(count)
        labels[ALL_VISITORS] = "all visitors"
    else:
        assignment, exposures_read, truncated = await _assignments(
            redis, experience, since, until, max_events, partitions
        )
        labels["0"] = "control"
        labels.update({str(i): entry_id for i, entry_id in enumerate(experience.variants, start=1)})
        if experience.holdout > 0 or HOLDOUT in assignment.values():
            labels[HOLDOUT] = HOLDOUT
        groups.update({variant: _Group(count) for variant in labels})
        for visitor, variant in assignment.items():
            groups[variant].exposed.add(visitor)

    unexposed: set[str] = set()
    events_read = 0
    events = read_streams(redis, all_streams(EVENT_STREAM, partitions), EVENT_DECODER, since, until)
    async with aclosing(events) as stream:
        async for event in stream:
            if events_read >= max_events:
                truncated = True
                break
            events_read += 1
            if event.ts is None:
                continue
            visitor = event.visitor_id
            if experience is None:
                group = groups[ALL_VISITORS]
            else:
                variant = assignment.get(visitor)
                if variant is None:
                    unexposed.add(visitor)
                    continue
                group = groups[variant]
            kind = _event_type(event)
            detail = _detail(event, kind)
            touchpoint = event.touchpoint or None
            channel = event.channel or _UNKNOWN_CHANNEL
            mask = 0
            for k, stage in enumerate(stages):
                if stage.matches(kind, touchpoint, detail):
                    mask |= 1 << k
                    n, who = group.channels[k].get(channel, (0, set()))
                    who.add(visitor)
                    group.channels[k][channel] = (n + 1, who)
            step = f"{channel}:{touchpoint}" if touchpoint is not None else None
            group.timelines.setdefault(visitor, []).append((event.ts, mask, step))
            part = group.touchpoints.get(touchpoint)
            if part is None:
                part = group.touchpoints[touchpoint] = _Touchpoint()
            part.add(event)

    return JourneyMap(
        journey=journey.key,
        name=journey.name,
        experience=None if experience is None else experience.key,
        since=since,
        until=until,
        stages=[
            StageInfo(key=s.key, name=s.name, touchpoints=s.touchpoints, event_types=s.event_types)
            for s in stages
        ],
        variants={
            variant: _variant_journey(variant, labels[variant], group, stages, experience is not None)
            for variant, group in groups.items()
        },
        unexposed_visitors=len(unexposed),
        events_read=events_read,
        exposures_read=exposures_read,
        max_events=max_events,
        truncated=truncated,
    )
