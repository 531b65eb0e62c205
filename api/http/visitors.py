"""Visitor routes (admin): erasing a visitor on request (right to erasure) — the whole person.

The id may be an anonymous visitor id, a person id or a customer's ``user_id``: every id linked to
the same person (:mod:`personalization.store.identity`) is erased with it, each everywhere Vary
copied it (:func:`~personalization.store.erase_copies.erase_everywhere`), and the user id's link
goes too. The answer counts the kinds summed over the ids and lists the other ids in
``linked_ids``."""

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
from personalization.store.erasure import Erasure, people_to_erase
from personalization.store.keys import person_index_key

__all__ = ["VisitorController"]


class VisitorController(Controller):
    path = "/v1/visitors"
    guards = [requires_admin]
    tags = ["privacy"]

    @delete("/{visitor_id:str}", status_code=200, summary="Erase a visitor")
    async def erase(
        self, state: State, visitor_id: Annotated[str, PathParameter(min_length=1, max_length=256)]
    ) -> Response[Erasure]:
        """Delete the visitor — with every id of the same person, when the id (an anonymous id, a
        person id or a ``user_id``) belongs to one — everywhere Vary copied them: profile, sticky assignments, attribution
        state, stored events and exposures, event markers and feedback tags, spooled and journaled
        entries, sink dead letters and Parquet exports; tell every sink (an ``erase`` record); and
        have the embedded Valkey rewrite its append-only file. The answer counts each kind.
        Aggregate counters, which hold no visitor, are kept (docs/security.md)."""
        runtime = runtime_of(state)
        data_dir = Path(runtime.settings.data_dir)
        ids, user_id = await people_to_erase(runtime.redis, visitor_id)
        erased: Erasure | None = None
        for one in ids:
            done = await erase_everywhere(
                runtime.redis, one, data_dir=data_dir, partitions=runtime.settings.stream_partitions
            )
            erased = done if erased is None else _sum(erased, done)
        assert erased is not None
        unlinked = bool(await runtime.redis.delete(person_index_key(user_id))) if user_id is not None else False
        aof = await rewrite_aof_after_erase(runtime.redis, data_dir)
        return Response(
            msgspec.structs.replace(
                erased, visitor_id=visitor_id, linked_ids=ids[1:], user_link_deleted=unlinked, aof_rewrite=aof
            )
        )


def _sum(total: Erasure, more: Erasure) -> Erasure:
    """Two erasures' counts added (the integer fields)."""
    added = {
        name: getattr(total, name) + getattr(more, name)
        for name in Erasure.__struct_fields__
        if isinstance(getattr(total, name), int) and not isinstance(getattr(total, name), bool)
    }
    return msgspec.structs.replace(total, **added)
