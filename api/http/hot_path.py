"""The lean path for ``POST /v1/personalize`` and ``POST /v1/events``: the same handlers, without the
framework's per-request layers.

Why: measured in process (issue 22), Litestar's layers around the personalize handler — routing,
the signature model that decodes the body to builtins and then converts it, dependency injection,
the response object and its header merging — cost about 0.1 ms of CPU per request, a third of the
route's cost and more than the whole echo app it is benchmarked against. This ASGI wrapper answers
the two hot routes' *ordinary* requests itself (what every front end sends on every page: a
decision, and its events) and hands every other one to Litestar, so behaviour has one definition:

* **Same handler, same checks.** The body check is the JSON hook's (:func:`api.http.limits.
  check_body`: UTF-8, depth), the key is looked up in the same key ring and counted by the same rate
  limiter as the delivery guard does (:mod:`api.http.auth`), the body size limit is the app's, and
  the answer comes from the route handler's own function (``DeliveryController.personalize``,
  ``EventController.events``), found in the app's route table, encoded as Litestar encodes it (a
  ``Response`` with headers, cookies or background tasks of its own is rendered by Litestar).
* **Anything unusual goes to Litestar, before any side effect.** A body msgspec refuses in one pass
  (Litestar then reports it in its own words), a missing or refused key, a query-string key, a
  declared length over the limit, a refused depth: the request is dispatched to the app unchanged
  (the body messages already read are put back), which answers exactly as without this path.
* **Errors after that are mapped in the one place.** The rate limit's 429 (counted once), the
  handler's domain errors (unknown entry, traits over their bound, a batch whose every event was
  rejected) and bugs are rendered by the
  app's exception handlers
  (:func:`api.http.errors.error_response`), never retried: a retry could log exposures twice.

``VARY_HOT_PATH=false`` turns it off (every request through Litestar);
``tests/api/http/test_hot_path.py`` and ``test_hot_path_events.py`` send the same requests both ways
and compare the answers.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.http.auth import SCOPE_KEY, bearer_token
from api.http.errors import error_response
from api.http.limits import check_body
from api.http.schemas import EventBatch, PersonalizeRequest

__all__ = ["EVENTS_PATH", "HANDED_OVER", "PATH", "PATHS", "Answer", "HotPath", "replay", "request_headers"]

PATH = "/v1/personalize"
EVENTS_PATH = "/v1/events"
#: The routes answered here (and by the server's direct path, :mod:`api.http.direct`), all ``POST``.
PATHS = frozenset((PATH, EVENTS_PATH))
_ENCODER = msgspec.json.Encoder()


class _Route:
    """One lean route: its body's decoder, its route handler (as the router sets it in the scope)
    and that handler's function (bound to its controller), and its status when it returns a body."""

    __slots__ = ("decoder", "fn", "handler", "path", "status")

    def __init__(self, app: Litestar, path: str, body: type[Any]) -> None:
        self.path = path
        self.decoder = msgspec.json.Decoder(body)
        self.handler = _route_handler(app, path)
        self.fn = self.handler.fn
        self.status: int = self.handler.status_code
        # This path writes JSON, as the handler must ("": it returns a Response, whose own media type,
        # checked per answer, is JSON unless it names another).
        if self.handler.media_type not in (MediaType.JSON, ""):
            raise ValueError(f"POST {path} answers {self.handler.media_type}, not JSON")


def _route_handler(app: Litestar, path: str) -> Any:
    """The ``POST`` handler of ``path`` (its ``fn`` bound to its controller), as the router finds it."""
    for route in app.routes:
        if route.path == path:
            for handler in getattr(route, "route_handlers", ()):
                if "POST" in handler.http_methods:
                    return handler
    raise LookupError(f"no POST {path} route in the app")


def replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` with the messages already read put back first: for a hand-over to Litestar, and
    for a handler's request once the body was read (here and by the server's direct path)."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay  # type: ignore[return-value]


#: What :meth:`HotPath.respond` answers: the status and JSON body of a success; an ASGI response (an
#: error, mapped in the one place, or a ``Response`` of the handler's that Litestar renders: call it
#: with the scope, receive and send); or ``None``: hand the request to Litestar (nothing has happened).
Answer = tuple[int, bytes] | ASGIApp | None

#: Scope key set on a request this path handed over, so that it goes to Litestar when it passes here
#: again (the server's direct path, :mod:`api.server`, hands over through the whole ASGI stack).
HANDED_OVER = "vary.handed_over"


def request_headers(scope: Scope) -> tuple[bytes | None, bytes | None, bytes, bool]:
    """The request's ``Authorization``, ``Content-Length`` (``None`` when absent) and ``Content-Type``,
    and whether it has an ``Origin`` (a browser's cross-origin request: CORS applies)."""
    authorization = length = None
    content_type = b""
    origin = False
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"content-length":
            length = value
        elif name == b"content-type":
            content_type = value
        elif name == b"origin":
            origin = True
    return authorization, length, content_type, origin


class HotPath:
    """ASGI wrapper: the hot routes (:data:`PATHS`) answered without the framework's layers (module doc)."""

    def __init__(self, app: ASGIApp, litestar: Litestar) -> None:
        self.app = app
        self._litestar = litestar
        self._routes = {PATH: _Route(litestar, PATH, PersonalizeRequest),
                        EVENTS_PATH: _Route(litestar, EVENTS_PATH, EventBatch)}
        self.max_body = litestar.request_max_body_size or 0
        #: Requests answered here, and those handed to Litestar (tests read them).
        self.answered = 0
        self.handed_over = 0

    def declared_fit(self, authorization: bytes | None, length: bytes | None) -> bool:
        """Whether a request with these headers may be answered here: a header key, and no declared
        length over the limit (else the app's own path answers: its guard, its 413)."""
        return authorization is not None and (length is None or (length.isdigit() and int(length) <= self.max_body))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in PATHS or HANDED_OVER in scope:
            await self.app(scope, receive, send)
            return
        authorization, length, content_type, _ = request_headers(scope)
        # A ?key= one, no key, or a declared length over the limit: the app answers. A chunked body is
        # read here and measured.
        if not self.declared_fit(authorization, length):
            await self._hand_over(scope, receive, send, [])
            return
        messages: list[Message] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client left: nobody to answer
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body:  # stop reading: the app reads the rest and answers 413
                await self._hand_over(scope, receive, send, messages)
                return
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        replayed = replay(messages, receive)
        answer = await self.respond(scope, body, authorization, content_type, replayed)  # type: ignore[arg-type]
        if answer is None:
            await self._hand_over(scope, receive, send, messages)
        elif type(answer) is tuple:
            status, payload = answer
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload, "more_body": False})
        else:
            await answer(scope, replayed, send)  # type: ignore[operator]

    async def respond(
        self, scope: Scope, body: bytes, authorization: bytes, content_type: bytes, receive: Receive
    ) -> Answer:
        """The answer to one whole request to one of :data:`PATHS` (see :data:`Answer`); ``receive``
        gives the body again, for a handler that reads it. Shared by this wrapper and the server's
        direct path (:mod:`api.http.direct`)."""
        route = self._routes[scope["path"]]
        state = self._litestar.state
        token = bearer_token(authorization.decode("latin-1"))
        key_scope = state.key_ring.scope_of(token) if token is not None else None
        if key_scope is None:
            return None
        try:
            check_body(body, content_type.decode("latin-1"))
            data = route.decoder.decode(body)
        except Exception:  # refused body or depth: no side effect yet
            return None
        scope[SCOPE_KEY] = key_scope  # type: ignore[literal-required]  # what the guard records
        scope["route_handler"] = route.handler  # as the router sets them
        scope["path_template"] = route.path
        request: Request[Any, Any, Any] = Request(scope, receive)
        try:
            limiter = state.get("rate_limiter")
            if limiter is not None:  # the delivery guard's count (api/http/auth.py); a 429 is answered
                await limiter.hit(token, "delivery")  # here, not handed over: it would count twice
            answer = await route.fn(data=data, state=state, request=request)
            if type(answer) is Response:
                if answer.headers or answer.cookies or answer.background is not None or answer.media_type is not None:
                    self.answered += 1
                    return answer.to_asgi_response(app=None, request=request)  # Litestar renders the rest
                status, payload = answer.status_code, _ENCODER.encode(answer.content)
            else:
                status, payload = route.status, _ENCODER.encode(answer)
        except Exception as exc:  # mapped in one place, never retried (exposures may be queued)
            response = error_response(self._litestar, request, exc)
            return response.to_asgi_response(app=None, request=request)
        self.answered += 1
        return status, payload

    async def _hand_over(self, scope: Scope, receive: Receive, send: Send, messages: list[Message]) -> None:
        """Let the app answer, with the body messages already read put back."""
        self.handed_over += 1
        await self.app(scope, replay(messages, receive) if messages else receive, send)
