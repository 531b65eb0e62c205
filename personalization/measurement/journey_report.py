"""What a journey map says: the answer of ``GET /v1/journeys/{key}``, and the pure parts of building it.

:mod:`personalization.measurement.journeys` reads the streams and counts; the Structs here are the
shape of its answer (every definition is in that module's docstring), :func:`share` and
:func:`top_paths` the statistics that need nothing but counts, and :func:`journey_window` the period a
request asks for.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated

from msgspec import Meta, Struct
from msgspec.structs import force_setattr

from personalization.errors import InvalidPeriod
from personalization.measurement.ranges import iso_utc
from personalization.measurement.stats import wilson_interval
from personalization.measurement.ux_cx import MetricEstimate

__all__ = [
    "DEFAULT_PERIOD_S",
    "PATH_LENGTH",
    "TOP_PATHS",
    "JourneyMap",
    "PathCount",
    "StageChannel",
    "StageCx",
    "StageInfo",
    "StageReport",
    "StageUx",
    "Timeline",
    "TransitionCount",
    "VariantJourney",
    "journey_window",
    "share",
    "top_paths",
]

#: The period read when none is given: the last 30 days.
DEFAULT_PERIOD_S = 30 * 86_400.0
#: How many paths and transitions are reported.
TOP_PATHS = 10
#: Steps in one reported path.
PATH_LENGTH = 3
#: One visitor's events: (ts, the stages it matches as a bit mask, its path step or None).
Timeline = list[tuple[float, int, str | None]]


class StageChannel(Struct, frozen=True, kw_only=True):
    """One channel at one stage: visitors with a stage-matching event there, and those events."""

    visitors: Annotated[int, Meta(description="Visitors with an event matching the stage on this channel.")]
    events: Annotated[int, Meta(description="Events matching the stage on this channel.")]


class StageUx(Struct, frozen=True, kw_only=True):
    """UX at a stage's touchpoints (see the module doc for each definition)."""

    task_success: Annotated[
        MetricEstimate,
        Meta(description="Share of `task` events with `success: true` at the stage's touchpoints, with its interval."),
    ]
    abandonment_rate: Annotated[
        MetricEstimate, Meta(description="Abandonments / (task events + abandonments) at the stage's touchpoints.")
    ]
    click_through_rate: Annotated[
        MetricEstimate, Meta(description="Unique clickers / unique visitors at the stage's touchpoints.")
    ]
    median_task_ms: (
        Annotated[float, Meta(description="Median task duration in milliseconds; null without timed tasks.")] | None
    )
    visitors: Annotated[int, Meta(description="Visitors with any event at the stage's touchpoints.")]
    page_views: Annotated[int, Meta(description="`page_view` events at the stage's touchpoints.")]
    clicks: Annotated[int, Meta(description="`click` events at the stage's touchpoints.")]
    tasks: Annotated[int, Meta(description="`task` events at the stage's touchpoints.")]
    abandonments: Annotated[int, Meta(description="`abandonment` events at the stage's touchpoints.")]


class StageCx(Struct, frozen=True, kw_only=True):
    """CX scores of surveys answered at a stage's touchpoints."""

    nps: Annotated[
        MetricEstimate, Meta(description="Net Promoter Score of NPS surveys answered at the stage (−100 to 100).")
    ]
    csat: Annotated[
        MetricEstimate,
        Meta(description="Customer satisfaction of CSAT surveys answered at the stage: percent of 4 and 5 answers."),
    ]
    ces: Annotated[
        MetricEstimate, Meta(description="Mean Customer Effort Score (1–7) of CES surveys answered at the stage.")
    ]


class StageReport(Struct, frozen=True, kw_only=True):
    """One stage for one variant. ``share`` = reached / the variant's visitors (Wilson)."""

    key: Annotated[str, Meta(description="The stage's key, as defined in Contentful.")]
    name: Annotated[str, Meta(description="The stage's display name.")]
    reached: Annotated[int, Meta(description="Visitors of the variant with at least one event matching the stage.")]
    share: Annotated[MetricEstimate, Meta(description="`reached` / the variant's visitors, with its Wilson interval.")]
    reached_after_previous: Annotated[
        int, Meta(description="Visitors who reached this stage after reaching the previous one.")
    ]
    continued: (
        Annotated[int, Meta(description="Visitors who went on from this stage to the next; null for the last stage.")]
        | None
    )
    drop_off: (
        Annotated[
            MetricEstimate,
            Meta(description="Share of visitors at this stage who did not reach the next; null for the last stage."),
        ]
        | None
    )
    median_s_to_next: (
        Annotated[
            float,
            Meta(
                description="Median seconds from this stage to the next, among those who continued; null without any."
            ),
        ]
        | None
    )
    channels: Annotated[dict[str, StageChannel], Meta(description="Channel → visitors and events at this stage there.")]
    ux: Annotated[StageUx, Meta(description="UX metrics at the stage's touchpoints.")]
    ux_by_touchpoint: Annotated[dict[str, StageUx], Meta(description="Touchpoint → UX metrics at that touchpoint.")]
    cx: Annotated[StageCx, Meta(description="CX scores of surveys answered at the stage's touchpoints.")]


class PathCount(Struct, frozen=True, kw_only=True):
    """Up to three consecutive steps (``channel:touchpoint``) and how many visitors took them."""

    steps: Annotated[tuple[str, ...], Meta(description="Up to three consecutive steps, each `channel:touchpoint`.")]
    visitors: Annotated[int, Meta(description="Visitors who took this path.")]


class TransitionCount(Struct, frozen=True, kw_only=True):
    """One step followed directly by another, and how many visitors made that move."""

    from_step: Annotated[str, Meta(description="The step (`channel:touchpoint`) moved from.")]
    to_step: Annotated[str, Meta(description="The step (`channel:touchpoint`) moved to, directly after.")]
    visitors: Annotated[int, Meta(description="Visitors who made this move.")]


class VariantJourney(Struct, frozen=True, kw_only=True):
    """The journey map of one variant (``"all"`` without an experience). ``label`` is ``control``,
    the variant's entry id, ``holdout`` or ``all visitors``."""

    variant: Annotated[
        str,
        Meta(description="The variant index as a string (`0` is control), `holdout`, or `all` without an experience."),
    ]
    label: Annotated[str, Meta(description="`control`, the variant's entry id, `holdout` or `all visitors`.")]
    visitors: Annotated[int, Meta(description="Visitors in this variant within the period.")]
    stages: Annotated[list[StageReport], Meta(description="Each stage of the journey, in order, for this variant.")]
    paths: Annotated[list[PathCount], Meta(description="The most common paths (up to three steps) and their visitors.")]
    transitions: Annotated[
        list[TransitionCount], Meta(description="The most common direct moves between steps and their visitors.")
    ]


class StageInfo(Struct, frozen=True, kw_only=True):
    """A stage as defined in Contentful, so a reader can label the map without the content."""

    key: Annotated[str, Meta(description="The stage's key.")]
    name: Annotated[str, Meta(description="The stage's display name.")]
    touchpoints: Annotated[
        tuple[str, ...], Meta(description="Touchpoints whose events put a visitor in this stage (empty: any).")
    ]
    event_types: Annotated[
        tuple[str, ...], Meta(description="Event kinds that put a visitor in this stage (empty: any).")
    ]


class JourneyMap(Struct, frozen=True, kw_only=True):
    """Everything ``GET /v1/journeys/{key}`` returns. ``since`` / ``until`` are Unix seconds (kept for
    one release), ``since_iso`` / ``until_iso`` the same times in ISO 8601 UTC (filled in from them);
    ``variants`` are keyed ``"all"`` or ``"0"``, ``"1"``…, ``"holdout"``."""

    journey: Annotated[str, Meta(description="The journey's key.")]
    name: Annotated[str, Meta(description="The journey's display name.")]
    experience: (
        Annotated[str, Meta(description="The experience whose variants are compared, or null for all visitors.")] | None
    )
    since: Annotated[
        float, Meta(description="Start of the period, Unix seconds (kept for one release: read `since_iso`).")
    ]
    until: Annotated[
        float, Meta(description="End of the period, Unix seconds (kept for one release: read `until_iso`).")
    ]
    stages: Annotated[list[StageInfo], Meta(description="The journey's stages as defined in Contentful, in order.")]
    variants: Annotated[
        dict[str, VariantJourney],
        Meta(description="`all`, or the variant index (`0`, `1`, …) and `holdout` → that variant's journey map."),
    ]
    unexposed_visitors: Annotated[
        int,
        Meta(description="Visitors with events in the period but no exposure to the experience (not in any variant)."),
    ]
    events_read: Annotated[int, Meta(description="Events read from the stream to build the map.")]
    exposures_read: Annotated[int, Meta(description="Exposures read from the stream to assign visitors to variants.")]
    max_events: Annotated[int, Meta(description="The most events one map reads (the server's bound).")]
    truncated: Annotated[
        bool, Meta(description="True when `max_events` was reached: the map covers only the events read.")
    ]
    since_iso: Annotated[str, Meta(description="`since` in ISO 8601 UTC.")] | None = None
    until_iso: Annotated[str, Meta(description="`until` in ISO 8601 UTC.")] | None = None

    def __post_init__(self) -> None:
        """The ISO twins always match the epoch fields (set here, so no caller can forget them)."""
        force_setattr(self, "since_iso", iso_utc(self.since))
        force_setattr(self, "until_iso", iso_utc(self.until))


# ------------------------------------------------------------------------------------ statistics


def share(successes: int, n: int) -> MetricEstimate:
    """``successes`` of ``n`` as a share with its Wilson interval (no score when ``n`` is 0)."""
    if n == 0:
        return MetricEstimate(score=None, interval=None, n=0)
    return MetricEstimate(score=successes / n, interval=wilson_interval(successes, n), n=n)


def top_paths(timelines: dict[str, Timeline]) -> tuple[list[PathCount], list[TransitionCount]]:
    """The most common three-step paths and step-to-step moves, counted once per visitor each."""
    paths: Counter[tuple[str, ...]] = Counter()
    transitions: Counter[tuple[str, str]] = Counter()
    for timeline in timelines.values():
        steps: list[str] = []
        for _, _, step in timeline:
            if step is not None and (not steps or steps[-1] != step):
                steps.append(step)
        if not steps:
            continue
        if len(steps) < PATH_LENGTH:
            paths[tuple(steps)] += 1
        else:
            paths.update({tuple(steps[i : i + PATH_LENGTH]) for i in range(len(steps) - PATH_LENGTH + 1)})
        transitions.update({(a, b) for a, b in zip(steps, steps[1:])})
    ranked_paths = sorted(paths.items(), key=lambda item: (-item[1], item[0]))[:TOP_PATHS]
    ranked_moves = sorted(transitions.items(), key=lambda item: (-item[1], item[0]))[:TOP_PATHS]
    return (
        [PathCount(steps=steps, visitors=n) for steps, n in ranked_paths],
        [TransitionCount(from_step=a, to_step=b, visitors=n) for (a, b), n in ranked_moves],
    )


# ------------------------------------------------------------------------------------ the period


def journey_window(since: str | None, until: str | None, now: float) -> tuple[float, float]:
    """The period of a journey map, as Unix seconds, from ISO 8601 dates or times.

    No offset means UTC; a bare ``until`` date includes that day. ``until`` defaults to ``now`` and
    ``since`` to :data:`DEFAULT_PERIOD_S` before it. :class:`~personalization.errors.InvalidPeriod`
    when a value cannot be read or the period is empty.
    """
    until_ts = _iso_ts(until, "until", end_of_day=True)
    until_ts = now if until_ts is None else until_ts
    since_ts = _iso_ts(since, "since", end_of_day=False)
    since_ts = until_ts - DEFAULT_PERIOD_S if since_ts is None else since_ts
    if since_ts >= until_ts:
        raise InvalidPeriod("since must be before until (which defaults to now)")
    return since_ts, until_ts


def _iso_ts(value: str | None, name: str, *, end_of_day: bool) -> float | None:
    """An ISO 8601 date or date-time as Unix seconds; a bare date is its midnight (UTC), or with
    ``end_of_day`` the next midnight, so ``until=2025-06-30`` includes the 30th."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidPeriod(
            f"{name} must be an ISO 8601 date or time, e.g. 2025-06-01 or 2025-06-01T12:00:00Z; got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if end_of_day and len(text) <= 10:  # a date alone: YYYY-MM-DD or YYYYMMDD
        parsed += timedelta(days=1)
    return parsed.timestamp()
