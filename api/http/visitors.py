"""Visitor routes (admin): erasing a visitor on request (right to erasure)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller
from litestar.datastructures import State
from litestar.params import PathParameter
from litestar.response import Response

from api.http.auth import requires_admin
from api.http.common import runtime_of
from api.http.handlers import delete
from personalization.store.erasure import Erasure, erase_visitor

__all__ = ["VisitorController"]


class VisitorController(Controller):
    path = "/v1/visitors"
    guards = [requires_admin]
    tags = ["privacy"]

    @delete("/{visitor_id:str}", status_code=200, summary="Erase a visitor")
    async def erase(
        self, state: State, visitor_id: Annotated[str, PathParameter(min_length=1, max_length=256)]
    ) -> Response[Erasure]:
        """Delete the visitor's profile, sticky assignments, attribution state, stored events and
        exposures. Aggregate counters, which hold no visitor, are kept."""
        runtime = runtime_of(state)
        return Response(
            await erase_visitor(runtime.redis, visitor_id, partitions=runtime.settings.stream_partitions)
        )
