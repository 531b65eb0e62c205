"""Visitor routes (admin): erasing a visitor on request (right to erasure)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
from litestar import Controller
from litestar.datastructures import State
from litestar.params import PathParameter
from litestar.response import Response

from api.embedded.valkey import rewrite_aof_after_erase
from api.http.auth import requires_admin
from api.http.common import runtime_of
from api.http.handlers import delete
from personalization.store.erase_copies import erase_everywhere
from personalization.store.erasure import Erasure

__all__ = ["VisitorController"]


class VisitorController(Controller):
    path = "/v1/visitors"
    guards = [requires_admin]
    tags = ["privacy"]

    @delete("/{visitor_id:str}", status_code=200, summary="Erase a visitor")
    async def erase(
        self, state: State, visitor_id: Annotated[str, PathParameter(min_length=1, max_length=256)]
    ) -> Response[Erasure]:
        """Delete the visitor everywhere Vary copied them: profile, sticky assignments, attribution
        state, stored events and exposures, event markers and feedback tags, spooled and journaled
        entries, sink dead letters and Parquet exports; tell every sink (an ``erase`` record); and
        have the embedded Valkey rewrite its append-only file. The answer counts each kind.
        Aggregate counters, which hold no visitor, are kept (docs/security.md)."""
        runtime = runtime_of(state)
        data_dir = Path(runtime.settings.data_dir)
        erased = await erase_everywhere(
            runtime.redis, visitor_id, data_dir=data_dir, partitions=runtime.settings.stream_partitions
        )
        aof = await rewrite_aof_after_erase(runtime.redis, data_dir)
        return Response(msgspec.structs.replace(erased, aof_rewrite=aof))
