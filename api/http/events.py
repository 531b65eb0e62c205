"""``POST /v1/events`` (delivery key): events from front ends, recorded or spooled by the recorder.

**People.** An event may carry ``user_id`` (a known customer id) and ``identity_token`` (proof
signed by the customer's backend, :mod:`personalization.store.identity`). With a ``visitor_id`` the
id is linked to the user's person first; without one (a back-office purchase, a survey after a call)
the event is the person's. Either way it is recorded under the person id. A ``user_id`` needs the
admin key or a valid token: without, the event is rejected naming ``user_id`` or
``identity_token``. Events of ids linked earlier are mapped to their person at ingestion (one
pipelined ``HGET`` per batch), so everything after a link is the person's. The two fields are taken
off the event here: the recorder and the stream never see a ``user_id``.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request
from litestar.datastructures import State
from litestar.params import JSONBody
from litestar.response import Response

from api.http.auth import key_scope, requires_delivery
from api.http.common import runtime_of
from api.http.handlers import post
from api.http.schemas import EventBatch, EventsAccepted, RejectedEvent
from api.metrics import EVENTS
from personalization.errors import Problem, RejectedBatch, StorageUnavailable
from personalization.measurement.events import EventError
from personalization.measurement.recorder import REDIS_UNREACHABLE
from personalization.store.identity import (
    IdentityRefused,
    link,
    person_of_user,
    resolve,
    verify_identity,
)
from personalization.store.profiles import PROFILE_TTL_S

__all__ = ["EventController"]

_MAX_ID = 256
_MAX_TOKEN = 200


class _People:
    """The batch with its ``user_id``\\s turned into person ids, linked ids mapped, refusals kept."""

    def __init__(self) -> None:
        self.kept: list[dict[str, Any]] = []
        #: Index in the request of each kept event.
        self.index: list[int] = []
        self.rejected: list[EventError] = []
        #: (visitor id, user id) → person id of the links made for this batch.
        self.linked: dict[tuple[str, str], str] = {}


def _refuse(people: _People, index: int, field: str, message: str) -> None:
    people.rejected.append(EventError(index=index, field=field, message=message))


async def _people_of(request: Request[Any, Any, Any], events: list[dict[str, Any]], state: State) -> _People:
    """Check and apply every event's ``user_id`` (see the module docstring)."""
    runtime = runtime_of(state)
    admin = key_scope(request) == "admin"
    now = time.time()
    people = _People()
    for index, raw in enumerate(events):
        event = dict(raw)
        user_id = event.pop("user_id", None)
        token = event.pop("identity_token", None)
        if user_id is not None:
            if not isinstance(user_id, str) or not 1 <= len(user_id) <= _MAX_ID:
                _refuse(people, index, "user_id", f"expected a string of 1-{_MAX_ID} characters")
                continue
            if token is not None and (not isinstance(token, str) or len(token) > _MAX_TOKEN):
                _refuse(people, index, "identity_token", f"expected a string of at most {_MAX_TOKEN} characters")
                continue
            if event.get("analytics", True) is not False:  # no consent: stored nowhere, linked to no one
                try:
                    if not admin:
                        verify_identity(runtime.settings.identity_secret, user_id, token, now)
                    visitor_id = event.get("visitor_id")
                    if isinstance(visitor_id, str) and 1 <= len(visitor_id) <= _MAX_ID:
                        pair = (visitor_id, user_id)  # a batch repeating a link pays for it once
                        if pair not in people.linked:
                            done = await link(runtime.redis, visitor_id, user_id, ttl_s=PROFILE_TTL_S)
                            people.linked[pair] = done.person_id
                        event["visitor_id"] = people.linked[pair]
                    elif visitor_id is None:
                        event["visitor_id"] = await person_of_user(runtime.redis, user_id, create=True)
                except IdentityRefused as exc:
                    _refuse(people, index, exc.field, exc.detail)
                    continue
                except REDIS_UNREACHABLE as exc:
                    raise StorageUnavailable(f"the user_id could not be linked ({type(exc).__name__}); retry") from exc
            elif "visitor_id" not in event:
                event["visitor_id"] = "-"  # dropped unread by the recorder (no analytics consent)
        elif token is not None:
            _refuse(people, index, "identity_token", "an identity token proves a user_id: send the user_id with it")
            continue
        people.kept.append(event)
        people.index.append(index)
    try:
        linked = await resolve(
            runtime.redis, (e["visitor_id"] for e in people.kept if isinstance(e.get("visitor_id"), str))
        )
    except REDIS_UNREACHABLE:  # the recorder spools the batch as sent; it stays under its ids
        linked = {}
    for event in people.kept:
        person = linked.get(event.get("visitor_id"))  # type: ignore[arg-type]
        if person is not None:
            event["visitor_id"] = person
    return people


class EventController(Controller):
    """Events from front ends (delivery key)."""

    path = "/v1"
    guards = [requires_delivery]
    tags = ["delivery"]

    @post("/events", status_code=202, summary="Events from front ends", operation_id="recordEvents")
    async def events(
        self, request: Request[Any, Any, Any], data: JSONBody[EventBatch], state: State
    ) -> Response[EventsAccepted]:
        """Record events (profile counters + ``vary:events``). A bad event rejects only itself; a
        retried ``event_id`` is not counted twice; ``analytics: false`` events are not stored.
        202 when any event was taken (bad ones listed in ``rejected``, each with ``key`` and ``message``
        as in a 4xx body's ``extra``, and ``field``, its older name); 400 with the standard error
        body (``extra`` naming each event and field) when every one was rejected. With Redis
        unreachable the events are spooled locally (``spooled``) and written once it returns; 503
        with ``Retry-After`` only when the spool is full too.

        Any event may carry ``user_id`` (a customer id, 1-256 characters) with ``identity_token``
        (``<expires>.<hex HMAC-SHA256>`` signed by the customer's backend with
        ``VARY_IDENTITY_SECRET``; not needed with the admin key): the ``visitor_id`` is linked to
        that person (without ``visitor_id``, the event is the person's), and the event is recorded
        under the person. An unproven ``user_id`` is rejected naming ``user_id``/``identity_token``."""
        runtime = runtime_of(state)
        recorder = runtime.events
        assert recorder is not None
        people = await _people_of(request, data.events, state)
        rejected = list(people.rejected)
        if not people.kept:
            EVENTS.labels("rejected").inc(len(rejected))
            raise RejectedBatch(
                "every event in the batch was rejected; nothing was recorded",
                problems=[Problem(_key(r), r.message) for r in sorted(rejected, key=_at)],
            )
        try:
            taken = await recorder.accept(list(people.kept))
        except RejectedBatch as exc:
            problems = [_renumbered(p, people.index) for p in exc.problems]
            problems += [Problem(_key(r), r.message) for r in rejected]
            EVENTS.labels("rejected").inc(len(problems))
            raise RejectedBatch(str(exc), problems=sorted(problems, key=lambda p: _number(p.key))) from exc
        rejected += [
            EventError(index=people.index[r.index], field=r.field, message=r.message) for r in taken.rejected
        ]
        body = EventsAccepted(
            accepted=taken.recorded.accepted,
            duplicates=taken.recorded.duplicates,
            spooled=taken.recorded.spooled,
            dropped=taken.dropped,
            rejected=[
                RejectedEvent(index=r.index, key=_key(r), message=r.message, field=r.field)
                for r in sorted(rejected, key=_at)
            ],
        )
        for outcome, count in (("accepted", body.accepted), ("duplicate", body.duplicates),
                               ("dropped", body.dropped), ("rejected", len(rejected))):
            if count:
                EVENTS.labels(outcome).inc(count)
        return Response(body, status_code=202)


def _at(error: EventError) -> int:
    return error.index


def _key(error: EventError) -> str:
    """Where in the request a rejected event is wrong, as a 4xx body's ``extra[].key`` says it
    (``events[3].goal``): one vocabulary for a 202's ``rejected`` and a 400's ``extra``."""
    return f"events[{error.index}].{error.field}"


def _number(key: str) -> int:
    """The event index of a problem key ``events[<i>].<field>``."""
    head = key.partition("]")[0]
    return int(head.removeprefix("events[")) if head.startswith("events[") else -1


def _renumbered(problem: Problem, index: list[int]) -> Problem:
    """A recorder problem about the kept event ``i`` as one about the request's event."""
    kept = _number(problem.key)
    if kept < 0:
        return problem
    return Problem(f"events[{index[kept]}]" + problem.key.partition("]")[2], problem.message)
