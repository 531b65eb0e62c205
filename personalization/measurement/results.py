"""Experiment results: the aggregates of :mod:`personalization.measurement.aggregation` turned into statistics.

Nothing is estimated here that :mod:`personalization.measurement.stats`,
:mod:`personalization.measurement.sequential` or :mod:`personalization.measurement.ux_cx` does not
already define. This module reads the experience's phases, then the counters of the phase asked
for (two pipelined round trips, whatever the number of goals, channels, segments, days and
touchpoints), and assembles what the modules that map them onto those functions return:

* goals per variant, with BH-adjusted p-values — :mod:`~personalization.measurement.results_goals`;
  CUPED (pre-exposure conversions) and CUPAC (the segment) on each row —
  :mod:`~personalization.measurement.results_adjusted`;
* breakdowns by channel and segment, BH-adjusted per breakdown, with a warning —
  :mod:`~personalization.measurement.results_breakdowns`;
* revenue per visitor and average order value per currency — :mod:`~personalization.measurement.results_value`;
* the personalization lift, everyone treated against the holdout —
  :mod:`~personalization.measurement.results_lift`;
* UX per touchpoint and CX per variant — :mod:`~personalization.measurement.results_ux`;
* sample-ratio mismatch — χ² of unique visitors per variant against the configured weights, flagged
  below :data:`~personalization.measurement.stats.SRM_THRESHOLD` (holdout visitors are not in the arms).

Where a comparison is impossible (an arm without visitors) its numbers are ``None`` and ``notes`` says
why, so a reader never takes a prior for a finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec
from msgspec import Meta, Struct
from redis.asyncio import Redis

from personalization.errors import InvalidInput, Problem
from personalization.measurement.attribution import HOLDOUT_VARIANT
from personalization.measurement.goals import MAX_GOALS
from personalization.measurement.ranges import RangeCounts, range_of
from personalization.measurement.results_adjusted import with_covariates
from personalization.measurement.results_breakdowns import Breakdowns
from personalization.measurement.results_breakdowns import (
    breakdowns as breakdowns_block,
)
from personalization.measurement.results_counts import Counts, text
from personalization.measurement.results_goals import (
    GoalResult,
    empty_arm_notes,
    goal_result,
    with_adjusted_p_values,
)
from personalization.measurement.results_lift import (
    PersonalizationLift,
    has_holdout,
    lift_notes,
    personalization_lift,
)
from personalization.measurement.results_ux import (
    CxVariant,
    UxVariant,
    cx_variant,
    ux_variant,
)
from personalization.measurement.results_value import (
    CurrencyVariant,
    ValueLift,
    value_by_currency,
    value_lift_by_currency,
)
from personalization.measurement.stats import SRM_THRESHOLD, srm_p_value
from personalization.measurement.surveys import ExperienceSurvey, experience_surveys
from personalization.store.keys import agg_key
from personalization.store.phases import Phase, current_phases, list_phases
from personalization.types import Experience, SurveyDefinition, phase_key

__all__ = ["DayCounts", "ExperimentResults", "encode_results", "experiment_results"]


class DayCounts(Struct, frozen=True, kw_only=True):
    """One UTC day, lists indexed by variant: new visitors and exposure entries that day, and per goal
    the visitors whose *first* conversion was that day and all conversion events that day."""

    visitors: Annotated[list[int], Meta(description="New visitors that day, per variant.")]
    exposures: Annotated[list[int], Meta(description="Exposure entries that day, per variant.")]
    converters: Annotated[
        dict[str, list[int]], Meta(description="Goal → visitors whose first conversion was that day, per variant.")
    ]
    conversions: Annotated[dict[str, list[int]], Meta(description="Goal → conversion events that day, per variant.")]


class ExperimentResults(Struct, frozen=True, kw_only=True):
    """Everything ``GET /v1/experiences/{key}/results`` returns.

    ``visitors`` / ``exposures`` are per variant (unique visitors, exposure entries incl. anonymous
    ones); ``enough_data`` is true when every variant of the first goal has ≥ 100 visitors and ≥ 25
    conversions in both arms (Optimizely's rule; say "too young" otherwise).
    ``personalization_lift`` (experiences with a holdout) compares, per goal, every visitor assigned
    outside the holdout with the holdout; ``notes`` says why a comparison is missing.
    """

    experience: Annotated[str, Meta(description="The experience's key.")]
    srm_p_value: (
        Annotated[
            float,
            Meta(description="Chi-square p-value of the sample-ratio-mismatch test (observed vs configured split)."),
        ]
        | None
    )
    srm_flag: Annotated[
        bool, Meta(description="True when `srm_p_value` < 0.001: the split is broken, results are not trustworthy.")
    ]
    enough_data: Annotated[
        bool,
        Meta(
            description="True when every variant of the first goal has ≥ 100 visitors and ≥ 25 conversions in both arms."
        ),
    ]
    visitors: Annotated[list[int], Meta(description="Unique visitors per variant.")]
    exposures: Annotated[list[int], Meta(description="Exposure entries per variant, anonymous ones included.")]
    anonymous_exposures: Annotated[
        int, Meta(description="Exposures of visitors without analytics consent (counted, not tied to a person).")
    ]
    holdout_visitors: Annotated[int, Meta(description="Visitors in the experience's holdout (served the baseline).")]
    variant_conflicts: Annotated[
        int, Meta(description="Visitors seen in more than one variant (excluded from the comparisons).")
    ]
    goals: Annotated[dict[str, GoalResult], Meta(description="Goal → one result per variant.")]
    breakdowns: Annotated[
        Breakdowns, Meta(description="`channel` / `segment` → cell → goal → variants, BH-adjusted per breakdown.")
    ]
    daily: Annotated[dict[str, DayCounts], Meta(description="UTC day (`YYYY-MM-DD`) → that day's counts.")]
    ux: Annotated[dict[str, dict[int, UxVariant]], Meta(description="Touchpoint → variant → UX metrics there.")]
    cx: Annotated[dict[int, CxVariant], Meta(description="Variant → CX metrics across the journey.")]
    discarded: Annotated[
        dict[str, int],
        Meta(
            description="Events not counted, by reason (`goal`: a goal the experience does not count; `rate`: beyond the per-visitor conversion limit; `survey_repeat`: a repeated survey answer)."
        ),
    ] = {}
    personalization_lift: Annotated[
        dict[str, PersonalizationLift],
        Meta(
            description="Per goal, treated (everyone assigned outside the holdout) vs holdout; `{}` without a holdout."
        ),
    ] = {}
    notes: Annotated[
        list[str], Meta(description="Why a comparison is `null` (an arm without visitors), in words.")
    ] = []
    range: (
        Annotated[
            RangeCounts,
            Meta(
                description="With `since` / `until`: the day counts of those days summed (`ranges`); `None` — and left out of the JSON — without them."
            ),
        ]
        | None
    ) = None
    value_by_currency: Annotated[
        dict[str, list[CurrencyVariant]],
        Meta(
            description="Per currency (never summed across currencies): revenue per visitor and average order value per variant, vs control (`results_value`)."
        ),
    ] = {}
    surveys: Annotated[
        dict[str, ExperienceSurvey],
        Meta(
            description="Per survey attached to the experience (by key): each variant's response rate (answered / shown) beside the CX figure of its answers, and `response_rate_differs` when a variant changes who answers (its `cx` comparison is then biased); `{}` without attached surveys. All-time, every phase: read from the event stream."
        ),
    ] = {}
    personalization_value_lift: Annotated[
        dict[str, ValueLift],
        Meta(
            description="Per currency, treated (everyone assigned outside the holdout, variants pooled) vs holdout: revenue per visitor and average order value, as `personalization_lift` does for conversions; `{}` without a holdout."
        ),
    ] = {}
    phase: Annotated[
        int,
        Meta(description="The phase these results are of (default: the current one) — counts never mix two set-ups."),
    ] = 1
    phases: Annotated[
        list[Phase],
        Meta(
            description="Every phase of the experience, oldest first (empty before its first record: all is phase 1)."
        ),
    ] = []
    breakdowns_warning: (
        Annotated[
            str,
            Meta(
                description="Beside `breakdowns` whenever it has a cell: they are exploratory, adjusted per breakdown."
            ),
        ]
        | None
    ) = None


def encode_results(results: ExperimentResults) -> bytes:
    """The results as JSON; ``range`` is left out when there is none (the response before ranges had no
    such key, and stays that way without ``since`` / ``until``)."""
    if results.range is not None:
        return msgspec.json.encode(results)
    return msgspec.json.encode({k: v for k, v in msgspec.structs.asdict(results).items() if k != "range"})


async def experiment_results(
    redis: Redis,
    experience: Experience,
    *,
    goals: Sequence[str] | None = None,
    since: str | None = None,
    until: str | None = None,
    phase: int | None = None,
    surveys: Sequence[SurveyDefinition] = (),
    event_streams: Sequence[str] = (),
) -> ExperimentResults:
    """Read an experience's aggregates and compute its results (phases, then two pipelined round trips).

    ``goals`` defaults to the experience's configured goals followed by any other goal seen in the
    aggregates (alphabetically). ``since`` / ``until`` (ISO dates, UTC) add ``range``; a bad date raises
    :class:`~personalization.errors.InvalidPeriod` before anything is read. ``phase`` picks the phase
    (default the current one, :mod:`personalization.store.phases`); one the experience never had raises
    :class:`~personalization.errors.InvalidInput` naming ``phase``. Phase 1 is always there: data from
    before phases existed is phase 1. ``surveys`` (those attached to this experience count; the
    caller passes the content's) are reported from ``event_streams`` (:mod:`.surveys`).
    """
    range_of({}, since, until)  # validate the period first: a bad date is a 400, not a wasted read
    phases = await list_phases(redis, experience.key)
    if phase is None:
        phase = (await current_phases(redis, [experience.key]))[experience.key]
    elif phase != 1 and phase not in {p.phase for p in phases}:
        known = ", ".join(str(p.phase) for p in phases) or "1"
        raise InvalidInput(
            f"phase: experience {experience.key!r} has no phase {phase} (phases: {known})",
            problems=[Problem("phase", f"no phase {phase}; phases: {known}")],
        )
    key = phase_key(experience.key, phase)
    k = len(experience.variants)
    pipe = redis.pipeline(transaction=False)
    pipe.smembers(agg_key(key, "dims"))
    pipe.smembers(agg_key(key, "goals"))
    pipe.smembers(agg_key(key, "tps"))
    pipe.hgetall(agg_key(key, "all"))
    dims_raw, goals_raw, tps_raw, all_raw = await pipe.execute()
    dims = sorted(text(d) for d in dims_raw)
    tps = sorted(text(t) for t in tps_raw)
    if goals is None:  # at most MAX_GOALS: data counted before goals were checked cannot flood a page
        seen = sorted(text(g) for g in goals_raw)
        goal_list = list(dict.fromkeys([*experience.goals, *seen]))[: max(MAX_GOALS, len(experience.goals))]
    else:
        goal_list = list(goals)

    pipe = redis.pipeline(transaction=False)
    for dim in dims:
        pipe.hgetall(agg_key(key, dim))
    for tp in tps:
        pipe.hgetall(agg_key(key, f"ux:{tp}"))
    for tp in tps:
        for v in range(k + 1):
            pipe.scard(agg_key(key, f"problems:{v}:{tp}"))
    replies = await pipe.execute()
    dim_counts = {dim: Counts(replies[i]) for i, dim in enumerate(dims)}
    ux_counts = {tp: Counts(replies[len(dims) + i]) for i, tp in enumerate(tps)}
    problem_counts = replies[len(dims) + len(tps):]

    counts = Counts(all_raw)
    visitors = [counts.count(v, "visitors") for v in range(k + 1)]
    srm = srm_p_value(visitors, experience.weights) if len(experience.weights) == k + 1 else None
    valued = {g: counts.has(f"vsum:{g}") for g in goal_list}  # a value block everywhere or nowhere
    segments = {dim[4:]: c for dim, c in dim_counts.items() if dim.startswith("seg:")}
    goal_results = with_covariates(
        with_adjusted_p_values({g: goal_result(counts, k, g, True, valued[g]) for g in goal_list}, experience.goals),
        counts, segments, k,
    )
    lift = personalization_lift(experience, counts, goal_list)
    held, personalizing = has_holdout(experience, counts), experience.type == "personalization"
    attached = [survey for survey in surveys if survey.experience == experience.key]

    daily: dict[str, DayCounts] = {}
    for dim, c in dim_counts.items():
        kind, _, name = dim.partition(":")
        if kind == "day":
            daily[name] = DayCounts(
                visitors=[c.count(v, "visitors") for v in range(k + 1)],
                exposures=[c.count(v, "exposures") for v in range(k + 1)],
                converters={g: [c.count(v, f"conv:{g}") for v in range(k + 1)] for g in goal_list},
                conversions={g: [c.count(v, f"events:{g}") for v in range(k + 1)] for g in goal_list},
            )

    ux: dict[str, dict[int, UxVariant]] = {}
    for i, tp in enumerate(tps):
        ux[tp] = {
            v: ux_variant(ux_counts[tp], v, visitors[v], int(problem_counts[i * (k + 1) + v])) for v in range(k + 1)
        }

    breakdowns, breakdowns_warning = breakdowns_block(dim_counts, k, goal_list, valued, experience.goals)
    first = goal_results[goal_list[0]].variants if goal_list else []
    return ExperimentResults(
        experience=experience.key,
        srm_p_value=srm,
        srm_flag=srm is not None and srm < SRM_THRESHOLD,
        enough_data=bool(first) and all(v.enough_data for v in first[1:]) and len(first) > 1,
        visitors=visitors,
        exposures=[counts.count(v, "exposures") for v in range(k + 1)],
        anonymous_exposures=sum(int(f.get("anonymous", 0)) for f in counts.by_variant.values()),
        holdout_visitors=counts.count(HOLDOUT_VARIANT, "visitors"),
        variant_conflicts=int(counts.top.get("variant_conflicts", 0)),
        goals=goal_results,
        breakdowns=breakdowns,
        breakdowns_warning=breakdowns_warning,
        daily=daily,
        ux=ux,
        cx={v: cx_variant(counts, v) for v in range(k + 1)},
        discarded={reason: int(n) for reason, n in sorted(counts.by_variant.get("discarded", {}).items())},
        personalization_lift=lift,
        notes=[*empty_arm_notes(experience, visitors), *lift_notes(lift)],
        range=range_of(daily, since, until),
        # a personalization experience's control is empty: its value is measured against the holdout
        value_by_currency=value_by_currency(counts, visitors[: k + 1], against_holdout=held and personalizing),
        personalization_value_lift=value_lift_by_currency(counts, k) if held else {},
        surveys=await experience_surveys(redis, event_streams, attached) if attached else {},
        phase=phase,
        phases=phases,
    )
