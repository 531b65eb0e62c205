"""The customer journey map: where visitors reach, leave and linger in a journey, per variant.

CX and UX people read one picture together — the stages of a journey (find → evaluate → decide →
buy → engage), how many visitors reach each, where they drop off, how long they take, what the
touchpoints of a stage feel like (UX) and what visitors say there (CX). With an experience chosen,
the same picture per variant shows *where* in the journey a variant helped or hurt, which a single
conversion rate cannot.

:func:`journey_map` rebuilds it from the logs (``vary:events``, and ``vary:exposures`` for the
variant), read with :func:`~personalization.models.streams.read_stream` for a bounded period, so it needs no
aggregate of its own and works for any journey defined after the fact. Definitions:

* **Visitor = person.** Every id in the logs is read as its person (:func:`_by_person`): an id
  linked to a person (:mod:`personalization.store.identity`) counts as that person, so a journey that
  starts anonymous on the web, continues identified in the app and converts in a store is one visitor
  here, including what the anonymous id did before the link (the logs keep ids, so the map, unlike the
  aggregates, re-attributes them). Unlinked ids are their own person.
* **Visitor, variant.** With an experience, a visitor's variant is decided by their *first*
  exposure to it in the period (``"0"`` control, ``"1"``…, ``"holdout"`` for holdout visitors);
  visitors with events but no such exposure are left out (counted in ``unexposed_visitors``), as are
  exposures of a variant the experience no longer has. A visitor's whole journey in the period
  counts for their variant, including events before the exposure (the stage that led to it).
  Without an experience everyone is in ``"all"``. ``visitors`` is exposed visitors (with an
  experience — also those with no event) or visitors with any event (without one).
* **Reaching a stage.** A visitor reaches a stage with at least one event the stage matches
  (:meth:`~personalization.types.JourneyStage.matches`: touchpoint and type). Stages are ordered but not
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
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from redis.asyncio import Redis

from personalization.measurement.events import (
    EVENT_STREAM,
    Abandonment,
    Click,
    Event,
    PageView,
    Survey,
    Task,
)
from personalization.measurement.stored_events import STORED_EVENT_DECODER
from personalization.store.exposures import EXPOSURE_STREAM
from personalization.store.identity import resolve
from personalization.measurement.journey_report import (
    DEFAULT_PERIOD_S,
    JourneyMap,
    StageChannel,
    StageCx,
    StageInfo,
    StageReport,
    StageUx,
    Timeline,
    VariantJourney,
    share,
    top_paths,
)
from personalization.models.streams import read_streams
from personalization.store.partitions import all_streams
from personalization.types import EXPOSURE_DECODER, Experience, Journey, JourneyStage
from personalization.measurement.ux_cx import (
    abandonment_rate,
    ces_from_histogram,
    click_through_rate,
    csat_from_histogram,
    nps_from_histogram,
    task_success,
)

__all__ = [
    "DEFAULT_MAX_EVENTS",
    "ALL_VISITORS",
    "HOLDOUT",
    "journey_map",
]

#: Events (and, separately, exposures) read at most; beyond it the map says ``truncated``.
DEFAULT_MAX_EVENTS = 500_000
#: The one group when no experience is chosen.
ALL_VISITORS = "all"
#: The group of an experience's holdout visitors.
HOLDOUT = "holdout"
_UNKNOWN_CHANNEL = "unknown"
_DETAIL = {"conversion": "goal", "task": "name", "survey": "metric"}
_SURVEY_METRICS = ("nps", "csat", "ces")
#: Records read before the new ids among them are mapped to their people (one pipelined round trip).
_RESOLVE_BATCH = 2_000


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

    def add(self, event: Event, visitor: str) -> None:
        self.visitors.add(visitor)
        if isinstance(event, PageView):
            self.page_views += 1
        elif isinstance(event, Click):
            self.clicks += 1
            self.clickers.add(visitor)
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
                share=share(reached, visitors),
                reached_after_previous=reached if k == 0 else continued[k - 1],
                continued=None if last else continued[k],
                drop_off=None if last else share(reached - continued[k], reached),
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
    paths, transitions = top_paths(group.timelines)
    return VariantJourney(
        variant=variant, label=label, visitors=visitors, stages=reports, paths=paths, transitions=transitions
    )


# ------------------------------------------------------------------------------------ reading by person


class _Logged(Protocol):
    """A record of a log stream: an event or an exposure."""

    @property
    def visitor_id(self) -> str | None: ...


_R = TypeVar("_R", bound=_Logged)


async def _by_person(
    redis: Redis, records: AsyncGenerator[_R, None], people: dict[str, str]
) -> AsyncIterator[tuple[str | None, _R]]:
    """Each record with the person of its ``visitor_id`` (the id itself when unlinked, ``None`` when it
    has none). Read in batches of :data:`_RESOLVE_BATCH`; the ids of a batch not in ``people`` yet are
    resolved in one pipelined round trip and remembered there."""
    async with aclosing(records) as stream:
        batch: list[_R] = []
        done = False
        while not done:
            try:
                batch.append(await anext(stream))
            except StopAsyncIteration:
                done = True
            if batch and (done or len(batch) >= _RESOLVE_BATCH):
                new = {r.visitor_id for r in batch if r.visitor_id is not None and r.visitor_id not in people}
                linked = await resolve(redis, new)
                people.update({visitor: linked.get(visitor, visitor) for visitor in new})
                for record in batch:
                    yield (None if record.visitor_id is None else people[record.visitor_id]), record
                batch = []


async def _assignments(
    redis: Redis, experience: Experience, since_ts: float, until_ts: float, cap: int, partitions: int,
    people: dict[str, str],
) -> tuple[dict[str, str], int, bool]:
    """Person → variant key from each person's first exposure to the experience in the period."""
    arms = len(experience.variants) + 1
    first: dict[str, tuple[float, str]] = {}
    read = 0
    truncated = False
    streams = all_streams(EXPOSURE_STREAM, partitions)
    exposures = read_streams(redis, streams, EXPOSURE_DECODER, since_ts, until_ts)
    async with aclosing(_by_person(redis, exposures, people)) as stream:
        async for visitor, exposure in stream:
            if read >= cap:
                truncated = True
                break
            read += 1
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
    people: dict[str, str] = {}  # id → its person, shared by both streams
    exposures_read = 0
    truncated = False
    if experience is None:
        groups[ALL_VISITORS] = _Group(count)
        labels[ALL_VISITORS] = "all visitors"
    else:
        assignment, exposures_read, truncated = await _assignments(
            redis, experience, since, until, max_events, partitions, people
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
    events = read_streams(redis, all_streams(EVENT_STREAM, partitions), STORED_EVENT_DECODER, since, until)
    async with aclosing(_by_person(redis, events, people)) as stream:
        async for visitor, event in stream:
            if events_read >= max_events:
                truncated = True
                break
            events_read += 1
            if event.ts is None or visitor is None:
                continue
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
            part.add(event, visitor)

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
