"""Experience routes (admin key): the experiences in the served content, their status, results, and
resuming what a guardrail paused (:mod:`personalization.measurement.guardrail_monitor`)."""

from __future__ import annotations

import time
from typing import Annotated

from litestar import Controller
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter
from litestar.response import Response
from msgspec import Meta, Struct

from api.http.auth import requires_admin
from api.http.common import experience_in, loaded_snapshot, runtime_of
from api.http.handlers import get, post
from api.http.schemas import ExperienceInfo, ExperienceList
from personalization.errors import Conflict
from personalization.measurement.events import EVENT_STREAM
from personalization.measurement.guardrail_monitor import live_pauses
from personalization.measurement.guardrails import experience_status
from personalization.measurement.results import (
    ExperimentResults,
    encode_results,
    experiment_results,
)
from personalization.store.partitions import all_streams
from personalization.store.pauses import resume
from personalization.store.phases import current_phases

__all__ = ["ExperienceController", "Resumed"]


class Resumed(Struct, frozen=True, kw_only=True):
    """What ``POST /v1/experiences/{key}/resume`` lifted: the variants, in the experience's current phase."""

    experience: Annotated[str, Meta(description="The experience resumed.")]
    phase: Annotated[int, Meta(description="The experience's current phase.")]
    resumed: Annotated[list[int], Meta(description="The variants lifted from a guardrail pause.")]


class ExperienceController(Controller):
    """Experiences and their results (admin key)."""

    path = "/v1"
    guards = [requires_admin]
    tags = ["admin"]

    @get("/experiences", summary="Experiences in the served content")
    async def experiences(self, state: State) -> ExperienceList:
        """Each experience's set-up, its ``status`` (``running``, ``scheduled``, ``ended``, or
        ``paused_by_guardrail`` when a guardrail paused any variant), ``paused`` (variant → reason) and, for
        mutually exclusive experiences, ``layer`` and ``layer_range`` (its [start, end) share of the layer);
        ``frequency_cap`` (``null``: none) and ``bucketing`` (``ninetailed`` for Contentful Personalization
        experiences)."""
        runtime = runtime_of(state)
        snapshot = loaded_snapshot(runtime)
        baselines = snapshot.baselines()
        paused = await live_pauses(runtime.redis, snapshot.experiences)
        now = time.time()
        return ExperienceList(
            experiences=[
                ExperienceInfo(
                    key=e.key,
                    name=e.name,
                    type=e.type,
                    entries=baselines[e.key],
                    variants=list(e.variants),
                    audience=e.audience.key if e.audience else None,
                    weights=list(e.weights),
                    traffic_allocation=e.traffic_allocation,
                    holdout=e.holdout,
                    goals=list(e.goals),
                    content_type=e.content_type,
                    status=experience_status(e, paused.get(e.key, {}), now),
                    paused=paused.get(e.key, {}),
                    layer=e.layer,
                    layer_range=e.layer_range,
                    frequency_cap=e.frequency_cap,
                    bucketing=e.bucketing,
                )
                for e in snapshot.experiences.values()
            ]
        )

    @get(
        "/experiences/{key:str}/results",
        summary="Experiment results: personalization lift, goals, UX and CX per variant",
        responses={200: ResponseSpec(ExperimentResults, description="Results", generate_examples=False)},
    )
    async def results(
        self, state: State, key: FromPath[str],
        since: Annotated[str | None, QueryParameter(max_length=64, description="First day of `range`, ISO date (UTC)")] = None,
        until: Annotated[str | None, QueryParameter(max_length=64, description="Last day of `range`, ISO date (UTC)")] = None,
        phase: Annotated[int | None, QueryParameter(ge=1, le=1_000_000, description="Phase to report (default: the current one)")] = None,
    ) -> Response[bytes]:
        """Per goal and variant: visitors (``exposures`` is the same count under its old name, kept as an
        alias for one release), conversions, rate with Wilson interval, uplift with interval, p-value
        and its Benjamini–Hochberg ``adjusted_p_value`` (over variants × configured goals), chance to
        beat control — ``null`` against an arm without visitors, with the reason in ``notes``.
        ``personalization_lift`` (experiences with a holdout): per goal, everyone assigned outside the
        holdout vs the holdout, with lift, its interval, p-value, always-valid ``sequential_interval``
        and chance to beat the holdout. Also the sample-ratio-mismatch check; breakdowns; UX per
        touchpoint; CX. With ``since`` / ``until`` (ISO dates, UTC), also ``range``:
        the day counts of those days summed (:mod:`personalization.measurement.ranges` says what is
        and is not ranged); everything else stays all-time. ``phase`` (default the current one) picks
        the phase the counts are of; ``phases`` lists them all (a phase that does not exist: 400)."""
        runtime = runtime_of(state)
        snapshot = loaded_snapshot(runtime)
        experience = experience_in(snapshot, key)
        results = await experiment_results(
            runtime.redis, experience, since=since, until=until, phase=phase,
            surveys=list(snapshot.surveys.values()),  # the attached ones are reported (``surveys``)
            event_streams=all_streams(EVENT_STREAM, runtime.settings.stream_partitions),
        )
        return Response(encode_results(results), media_type="application/json")

    @post("/experiences/{key:str}/resume", status_code=200,
          summary="Resume the variants a guardrail paused (they are not paused again by the same guardrail "
                  "in this phase)")
    async def resume(self, state: State, key: FromPath[str]) -> Resumed:
        """Lifts every guardrail pause of the experience in its current phase: the variants' visitors get
        them again. 404 for an experience not in the served content, 409 when nothing is paused."""
        runtime = runtime_of(state)
        experience = experience_in(loaded_snapshot(runtime), key)
        phase = (await current_phases(runtime.redis, [experience.key])).get(experience.key, 1)
        resumed = await resume(runtime.redis, experience.key, phase)
        if not resumed:
            raise Conflict(f"experience {key!r} has no variant paused by a guardrail; nothing to resume")
        return Resumed(experience=experience.key, phase=phase, resumed=resumed)
