"""Delivery routes (delivery key): the personalized entries for one visitor.

Known bots and crawlers (:mod:`personalization.measurement.bots`) are served the same way, but their
decisions log no exposure (and hand out no exposure tokens); they are counted as discarded instead.
"""

from __future__ import annotations

import time
from typing import Annotated

from litestar import Controller, Request
from litestar.datastructures import State
from litestar.params import JSONBody, PathParameter, QueryParameter

from api.frontend.exposures import with_exposure_tokens
from api.http.auth import requires_delivery
from api.http.common import runtime_of, serving_snapshot, shape_entries
from api.http.handlers import get, post
from api.http.schemas import PersonalizedEntry, PersonalizeRequest, PersonalizeResponse
from personalization.errors import Problem, UnknownEntry
from personalization.measurement.bots import count_bot_decisions, is_bot
from personalization.types import Channel, Consent, Visitor

__all__ = ["DeliveryController"]


class DeliveryController(Controller):
    """Front-end routes (delivery key)."""

    path = "/v1"
    guards = [requires_delivery]
    tags = ["delivery"]

    @post("/personalize", status_code=200, summary="Personalized content for one visitor", operation_id="personalize")
    async def personalize(
        self, data: JSONBody[PersonalizeRequest], state: State, request: Request
    ) -> PersonalizeResponse:
        """Decide a variant for each baseline entry and return its fields; one exposure per entry is
        logged — or, with ``"exposures": "on_view"``, handed out as ``exposure_token``s for
        ``POST /v1/exposures``. ``preview=true`` (admin key) decides over drafts and logs nothing."""
        runtime = runtime_of(state)
        snapshot = await serving_snapshot(runtime, request, data.preview)
        unknown = [
            Problem(f"entries[{i}]", f"no published entry with id {entry_id!r}")
            for i, entry_id in enumerate(data.entries)
            if not snapshot.has_entry(entry_id)
        ]
        if unknown:
            raise UnknownEntry.among(unknown)
        locale = snapshot.locale_for(data.locale or data.visitor.locale)
        assert runtime.personalizer is not None
        bot = is_bot(request.headers.get("user-agent"))
        on_view = data.exposures == "on_view" and not data.preview and not bot
        result = await runtime.personalizer.personalize(
            data.visitor, data.entries, snapshot, record=not data.preview and not bot, defer_exposures=on_view
        )
        if bot and not data.preview:
            await count_bot_decisions(runtime.redis, result.outcome.exposures)
        entries = shape_entries(result, snapshot, locale)
        if on_view:
            entries = with_exposure_tokens(entries, result.outcome.exposures, state.exposure_tokens, time.time())
        return PersonalizeResponse(
            visitor_id=data.visitor.id,
            locale=locale,
            segments=result.outcome.segments,
            model_version=result.outcome.model_version,
            content_version=snapshot.version,
            degraded=result.degraded,
            entries=entries,
        )

    @get("/entries/{entry_id:str}", summary="One personalized entry")
    async def entry(
        self,
        state: State,
        request: Request,
        entry_id: Annotated[str, PathParameter(max_length=256)],
        visitor_id: Annotated[str, QueryParameter(min_length=1, max_length=256)],
        channel: Annotated[Channel, QueryParameter()] = "web",
        locale: Annotated[str | None, QueryParameter(max_length=35)] = None,
        session_id: Annotated[str | None, QueryParameter(max_length=256)] = None,
        country: Annotated[str | None, QueryParameter(pattern="^[A-Za-z]{2}$")] = None,
        device: Annotated[str | None, QueryParameter(max_length=64)] = None,
        consent_personalization: Annotated[bool, QueryParameter()] = True,
        consent_analytics: Annotated[bool, QueryParameter()] = True,
        preview: Annotated[bool, QueryParameter()] = False,
    ) -> PersonalizedEntry:
        """The same decision as ``POST /v1/personalize`` for a single entry, for clients that prefer GET."""
        runtime = runtime_of(state)
        snapshot = await serving_snapshot(runtime, request, preview)
        if not snapshot.has_entry(entry_id):
            raise UnknownEntry.one(entry_id)
        visitor = Visitor(
            id=visitor_id,
            session_id=session_id,
            channel=channel,
            locale=locale,
            device=device,
            country=country,
            consent=Consent(personalization=consent_personalization, analytics=consent_analytics),
        )
        assert runtime.personalizer is not None
        bot = is_bot(request.headers.get("user-agent"))
        result = await runtime.personalizer.personalize(visitor, [entry_id], snapshot, record=not preview and not bot)
        if bot and not preview:
            await count_bot_decisions(runtime.redis, result.outcome.exposures)
        return shape_entries(result, snapshot, snapshot.locale_for(locale))[0]
