"""The one place where Vary's errors become HTTP errors.

Routes and the domain raise the errors of :mod:`personalization.errors` (and content's own,
:mod:`content.errors`, :mod:`content.webhooks`; and the model registry's and evaluation's, which
predate the tree) — and redis-py's "the store is down now" errors (:data:`REDIS_DOWN`: refused or
timed-out connections, a server still loading, a cluster without all its slots), which every route
may meet and which are :class:`~personalization.errors.StorageUnavailable` (503 with ``Retry-After``)
rather than a bug. :func:`to_http` turns each into the :class:`~litestar.exceptions.HTTPException`
it means — status, ``detail``, ``extra`` (one ``{"key", "message"}`` per problem) and headers such as
``Retry-After`` — and :func:`exception_handlers` registers that for a layer: the app renders it as
the JSON error body (:func:`http_error`), the dashboard as its error page.

Litestar's HTTP exceptions are raised in only a few other places, all at the HTTP level, before a
route's domain code runs: the key guards (:mod:`api.http.auth`), the rate limiter
(:mod:`api.http.ratelimit`), the request-body checks (:mod:`api.http.limits`), the CORS middleware
(:mod:`api.http.cors`) and the dashboard's sign-in guard and form-origin check
(:mod:`api.dashboard.guards`). They are about the request (its key, its rate, its bytes, its origin),
not about anything Vary knows, so they speak HTTP directly. A test
(``tests/api/http/test_errors.py``) keeps it that way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from redis import exceptions as redis_errors

from content.errors import ContentSourceError
from content.webhooks import WebhookPayloadError, WebhookSignatureError
from personalization.errors import (
    Conflict,
    InvalidInput,
    LaunchGateRefused,
    NotAuthenticated,
    NotFound,
    NotPermitted,
    StorageUnavailable,
    Unavailable,
    Unusable,
    UpstreamFailed,
    VaryError,
)
from personalization.models.evaluation import EvaluationError, NotAPolicyError
from personalization.models.files import ModelLoadError
from personalization.models.registry import UnknownModelVersion
from personalization.privacy import redact_path

__all__ = [
    "MAPPED",
    "REDIS_DOWN",
    "STORAGE_RETRY_AFTER_S",
    "error_response",
    "exception_handlers",
    "http_error",
    "internal_error",
    "storage_unavailable",
    "to_http",
]

log = logging.getLogger("vary")

#: Branch of the domain tree → status. The first match wins, so a branch comes before its root.
_STATUS: tuple[tuple[type[VaryError], int], ...] = (
    (NotFound, 404),
    (InvalidInput, 400),
    (NotAuthenticated, 401),
    (NotPermitted, 403),
    (Conflict, 409),
    (Unusable, 422),
    (UpstreamFailed, 502),
    (Unavailable, 503),
    (VaryError, 400),
)

#: redis-py errors that mean the store cannot serve *now* (most specific first: the first match names
#: the cause). Other Redis errors (a wrong command, a script bug) stay 500s: they are bugs.
_REDIS_CAUSES: tuple[tuple[type[Exception], str], ...] = (
    (redis_errors.BusyLoadingError, "Redis is still loading its data"),
    (redis_errors.TimeoutError, "Redis did not answer in time"),
    (redis_errors.ConnectionError, "Redis cannot be reached"),
    (redis_errors.ClusterDownError, "the Redis cluster is down"),
    (redis_errors.TryAgainError, "the Redis cluster is moving the keys this needs"),
    (redis_errors.SlotNotCoveredError, "the Redis cluster does not serve every slot"),
    (redis_errors.ReadOnlyError, "Redis is read-only (a replica, or a failover under way)"),
    (redis_errors.OutOfMemoryError, "Redis is out of memory and refuses writes"),
)
REDIS_DOWN: tuple[type[Exception], ...] = tuple(kind for kind, _ in _REDIS_CAUSES)
#: What a 503 for an unavailable Redis asks the client to wait before retrying.
STORAGE_RETRY_AFTER_S = 5
_WARN_EVERY_S = 10.0
_last_warning = 0.0

#: Every exception type :func:`to_http` understands (the roots of each tree it maps).
MAPPED: tuple[type[Exception], ...] = (
    *REDIS_DOWN,
    VaryError,
    ContentSourceError,
    WebhookSignatureError,
    WebhookPayloadError,
    UnknownModelVersion,
    EvaluationError,
    ModelLoadError,
)


def storage_unavailable(exc: Exception) -> StorageUnavailable:
    """The domain error a redis-py failure of :data:`REDIS_DOWN` means: its cause in words and the
    exception's type, never its text (which holds the server's address). The full error is logged
    (at most every ``_WARN_EVERY_S``) for the operator."""
    global _last_warning
    cause = next(text for kind, text in _REDIS_CAUSES if isinstance(exc, kind))
    now = time.monotonic()
    if now - _last_warning >= _WARN_EVERY_S:
        _last_warning = now
        log.warning("Redis unavailable, answering 503: %s: %s", type(exc).__name__, exc)
    return StorageUnavailable(
        f"storage unavailable: {cause} ({type(exc).__name__}); retry in {STORAGE_RETRY_AFTER_S} s",
        retry_after_s=STORAGE_RETRY_AFTER_S,
    )


def to_http(exc: Exception) -> HTTPException:
    """The HTTP error that ``exc`` (one of :data:`MAPPED`) means."""
    if isinstance(exc, REDIS_DOWN):
        exc = storage_unavailable(exc)
    if isinstance(exc, VaryError):
        status = next(code for branch, code in _STATUS if isinstance(exc, branch))
        extra: Any = [{"key": p.key, "message": p.message} for p in exc.problems] or None
        if isinstance(exc, LaunchGateRefused):
            extra = {"gate": exc.gate}
        retry_after = exc.retry_after_s if isinstance(exc, Unavailable) else None
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return HTTPException(status_code=status, detail=exc.message, extra=extra, headers=headers)
    if isinstance(exc, UnknownModelVersion):
        return HTTPException(status_code=404, detail=f"no model with version {exc.args[0]!r}")
    if isinstance(exc, NotAPolicyError):
        return HTTPException(status_code=400, detail=str(exc))
    if isinstance(exc, EvaluationError | ModelLoadError):
        return HTTPException(status_code=422, detail=str(exc))
    if isinstance(exc, WebhookSignatureError):
        return HTTPException(status_code=401, detail=f"webhook refused: {exc}")
    if isinstance(exc, WebhookPayloadError):
        return HTTPException(status_code=400, detail=f"webhook payload: {exc}")
    if isinstance(exc, ContentSourceError):
        return HTTPException(status_code=502, detail=f"Contentful failed: {exc}")
    raise TypeError(f"no HTTP mapping for {type(exc).__name__}") from exc


def http_error(request: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    """The JSON error body every ``/v1`` route answers with: ``status_code``, ``detail``, ``extra``."""
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.detail}
    if exc.extra:
        body["extra"] = exc.extra
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def internal_error(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    """Last resort: log the bug with its traceback, tell the client nothing internal."""
    log.exception("unhandled error on %s %s", request.method, redact_path(request.url.path), exc_info=exc)
    return Response(
        {"status_code": 500, "detail": "internal error; it has been logged"},
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


Render = Callable[[Request, HTTPException], Response[Any]]


def exception_handlers(render: Render = http_error) -> dict[type[Exception], Callable[[Request, Any], Response[Any]]]:
    """Litestar ``exception_handlers`` for a layer: every mapped error, and Litestar's own HTTP
    errors, drawn by ``render`` (the JSON body by default; the dashboard passes its error page)."""

    def domain(request: Request, exc: Exception) -> Response[Any]:
        return render(request, to_http(exc))

    return {**{kind: domain for kind in MAPPED}, HTTPException: render}


def error_response(app: Litestar, request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The answer the app's exception handlers give ``exc`` (the most specific class registered,
    as Litestar picks it), for code that runs outside Litestar's handler middleware: the lean
    personalize path (:mod:`api.http.hot_path`). One mapping, whichever path raised."""
    for kind in type(exc).__mro__:
        handler = app.exception_handlers.get(kind)
        if handler is not None:
            return handler(request, exc)
    return internal_error(request, exc)
