"""``POST /v1/events`` (delivery key): events from front ends, recorded or spooled by the recorder."""

from __future__ import annotations

from litestar import Controller
from litestar.datastructures import State
from litestar.params import JSONBody
from litestar.response import Response

from api.http.auth import requires_delivery
from api.http.common import runtime_of
from api.http.handlers import post
from api.http.schemas import EventBatch, EventsAccepted, RejectedEvent

__all__ = ["EventController"]


class EventController(Controller):
    """Events from front ends (delivery key)."""

    path = "/v1"
    guards = [requires_delivery]
    tags = ["delivery"]

    @post("/events", status_code=202, summary="Events from front ends", operation_id="recordEvents")
    async def events(self, data: JSONBody[EventBatch], state: State) -> Response[EventsAccepted]:
        """Record events (profile counters + ``vary:events``). A bad event rejects only itself; a
        retried ``event_id`` is not counted twice; ``analytics: false`` events are not stored.
        202 when any event was taken (bad ones listed in ``rejected``); 400 with the standard error
        body (``extra`` naming each event and field) when every one was rejected. With Redis
        unreachable the events are spooled locally (``spooled``) and written once it returns; 503
        with ``Retry-After`` only when the spool is full too."""
        recorder = runtime_of(state).events
        assert recorder is not None
        taken = await recorder.accept(data.events)
        body = EventsAccepted(
            accepted=taken.recorded.accepted,
            duplicates=taken.recorded.duplicates,
            spooled=taken.recorded.spooled,
            dropped=taken.dropped,
            rejected=[RejectedEvent(index=r.index, field=r.field, message=r.message) for r in taken.rejected],
        )
        return Response(body, status_code=202)
