"""Measurement routes (admin key): journey maps, the cross-channel CX metrics, the program-level lift.

:func:`journey_report` is the journey map's one path from a request to the answer; the dashboard's
journey page calls it too.
"""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from litestar import Controller
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter
from litestar.response import Response

from api.http.auth import requires_admin
from api.http.common import experience_in, journey_in, loaded_snapshot, runtime_of
from api.http.handlers import get
from api.runtime import Runtime
from personalization.decision.global_holdout import global_share
from personalization.measurement.cx import (
    Breakdown,
    CxReport,
    journey_metrics,
    parse_period,
)
from personalization.measurement.journey_report import JourneyMap, journey_window
from personalization.measurement.journeys import journey_map
from personalization.measurement.program_lift import ProgramLift, program_lift
from personalization.types import Experience, Journey

__all__ = ["MeasurementController", "journey_report"]


async def journey_report(
    runtime: Runtime, key: str, experience: str | None, since: str | None, until: str | None
) -> tuple[Journey, Experience | None, JourneyMap]:
    """The journey ``key`` of the served content, the experience its map is split by (if any), and
    the map over ``since`` … ``until`` (ISO dates or times; default the last 30 days)."""
    snapshot = loaded_snapshot(runtime)
    journey = journey_in(snapshot, key)
    chosen = experience_in(snapshot, experience) if experience is not None else None
    since_ts, until_ts = journey_window(since, until, time.time())
    result = await journey_map(
        runtime.redis, journey, experience=chosen, since_ts=since_ts, until_ts=until_ts,
        partitions=runtime.settings.stream_partitions,
    )
    return journey, chosen, result


class MeasurementController(Controller):
    """Journey maps, CX and the program lift (admin key)."""

    path = "/v1"
    guards = [requires_admin]
    tags = ["admin"]

    @get(
        "/journeys/{key:str}",
        summary="Customer journey map: reach, drop-off, time, UX, CX, paths",
        responses={200: ResponseSpec(JourneyMap, description="Journey map", generate_examples=False)},
    )
    async def journey(
        self,
        state: State,
        key: FromPath[str],
        experience: Annotated[str | None, QueryParameter(max_length=256)] = None,
        since: Annotated[str | None, QueryParameter(max_length=64)] = None,
        until: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> Response[bytes]:
        """Per stage of the journey: visitors reaching it, drop-off to the next, median time between
        stages, UX of its touchpoints, CX scores and channels; plus the most common paths. Per variant
        of ``experience`` when given. ``since``/``until``: ISO dates or times (UTC unless an offset is
        given; a bare ``until`` date includes that day), default the last 30 days."""
        _, _, result = await journey_report(runtime_of(state), key, experience, since, until)
        return Response(msgspec.json.encode(result), media_type="application/json")

    @get("/cx", summary="Journey metrics across channels: NPS, CSAT, CES, retention, repeat purchase, switching")
    async def cx(
        self,
        state: State,
        since: Annotated[
            str | None, QueryParameter(max_length=64, description="First day, ISO date (UTC); its ISO week counts")
        ] = None,
        until: Annotated[
            str | None, QueryParameter(max_length=64, description="Last day, ISO date (UTC); its ISO week counts")
        ] = None,
        by: Annotated[Breakdown, QueryParameter(description="Breakdowns: all, channel or segment")] = "all",
    ) -> CxReport:
        """NPS, CSAT (percent), CES, repeat-purchase rate, retention by weekly cohort and channel
        switching over the ISO weeks of ``since`` … ``until`` (default: every week with data), with the
        survey and purchase metrics by channel and by segment. A bad date, or since after until: 400."""
        start, end = parse_period(since, until)
        return await journey_metrics(runtime_of(state).redis, since=start, until=end, by=by)

    @get("/lift", summary="Lift of all personalization against the global holdout: goals, NPS, CSAT, CES, retention")
    async def lift(self, state: State) -> ProgramLift:
        """The reserved ``_global`` experience's results: treated visitors (everything Vary personalizes)
        against the global holdout (``varySettings.globalHoldout``, else ``VARY_GLOBAL_HOLDOUT``), per goal
        of the space (``personalization_lift`` blocks), NPS, CSAT and CES (treated − holdout with 95 %
        intervals) and retention (visitors back on a later day, with lift). ``notes`` says why a comparison
        is ``null``: no global holdout configured, or an arm without visitors."""
        runtime = runtime_of(state)
        snapshot = loaded_snapshot(runtime)
        share = global_share(snapshot.global_holdout, runtime.settings.global_holdout)
        goals = snapshot.goals
        if goals is None:  # no declared goals: the experiences' configured goals (bounded by the content)
            goals = tuple(dict.fromkeys(g for e in snapshot.experiences.values() for g in e.goals))
        return await program_lift(runtime.redis, share, goals)
