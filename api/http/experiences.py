"""Experience routes (admin key): the experiences in the served content and their results."""

from __future__ import annotations

import msgspec
from litestar import Controller
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.response import Response

from api.http.auth import requires_admin
from api.http.common import experience_in, loaded_snapshot, runtime_of
from api.http.handlers import get
from api.http.schemas import ExperienceInfo, ExperienceList
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
        summary="Experiment results: goals, UX and CX per variant",
        responses={200: ResponseSpec(ExperimentResults, description="Results", generate_examples=False)},
    )
    async def results(self, state: State, key: FromPath[str]) -> Response[bytes]:
        """Per goal: exposures, conversions, rate with Wilson interval, uplift with interval, p-value,
        chance to beat control; the sample-ratio-mismatch check; breakdowns; UX per touchpoint; CX."""
        runtime = runtime_of(state)
        experience = experience_in(loaded_snapshot(runtime), key)
        results = await experiment_results(runtime.redis, experience)
        return Response(msgspec.json.encode(results), media_type="application/json")
