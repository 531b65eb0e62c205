"""Experience routes (admin key): the experiences in the served content and their results."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter
from litestar.response import Response

from api.http.auth import requires_admin
from api.http.common import experience_in, loaded_snapshot, runtime_of
from api.http.handlers import get
from api.http.schemas import ExperienceInfo, ExperienceList
from personalization.measurement.ranges import range_of
from personalization.measurement.results import ExperimentResults, experiment_results

__all__ = ["ExperienceController"]


class ExperienceController(Controller):
    """Experiences and their results (admin key)."""

    path = "/v1"
    guards = [requires_admin]
    tags = ["admin"]

    @get("/experiences", summary="Experiences in the served content")
    async def experiences(self, state: State) -> ExperienceList:
        snapshot = loaded_snapshot(runtime_of(state))
        baselines = snapshot.baselines()
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
        and is not ranged); everything else stays all-time."""
        runtime = runtime_of(state)
        experience = experience_in(loaded_snapshot(runtime), key)
        results = await experiment_results(runtime.redis, experience)
        ranged = range_of(results.daily, since, until)
        shown = results if ranged is None else {**msgspec.structs.asdict(results), "range": ranged}
        return Response(msgspec.json.encode(shown), media_type="application/json")
