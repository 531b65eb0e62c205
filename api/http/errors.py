"""The one place where Vary's errors become HTTP errors.

Routes and the domain raise the errors of :mod:`personalization.errors` (and content's own,
:mod:`content.errors`, :mod:`content.webhooks`; and the model registry's and evaluation's, which
predate the tree). :func:`to_http` turns each into the :class:`~litestar.exceptions.HTTPException`
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
from collections.abc import Callable
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from content.errors import ContentSourceError
from content.webhooks import WebhookPayloadError, WebhookSignatureError
from personalization.errors import (
    InvalidInput,
    NotAuthenticated,
    NotFound,
    NotPermitted,
    Unavailable,
    Unusable,
    UpstreamFailed,
    VaryError,
)
from personalization.models.evaluation import EvaluationError, NotAPolicyError
from personalization.models.files import ModelLoadError
from personalization.models.registry import UnknownModelVersion
from personalization.privacy import redact_path

__all__ = ["MAPPED", "exception_handlers", "http_error", "internal_error", "to_http"]

log = logging.getLogger("vary")

#: Branch of the domain tree → status. The first match wins, so a branch comes before its root.
_STATUS: tuple[tuple[type[VaryError], int], ...] = (
    (NotFound, 404),
    (InvalidInput, 400),
    (NotAuthenticated, 401),
    (NotPermitted, 403),
    (Unusable, 422),
    (UpstreamFailed, 502),
    (Unavailable, 503),
    (VaryError, 400),
)

#: Every exception type :func:`to_http` understands (the roots of each tree it maps).
MAPPED: tuple[type[Exception], ...] = (
    VaryError,
    ContentSourceError,
    WebhookSignatureError,
    WebhookPayloadError,
    UnknownModelVersion,
    EvaluationError,
    ModelLoadError,
)


def to_http(exc: Exception) -> HTTPException:
    """The HTTP error that ``exc`` (one of :data:`MAPPED`) means."""
    if isinstance(exc, VaryError):
        status = next(code for branch, code in _STATUS if isinstance(exc, branch))
        extra = [{"key": p.key, "message": p.message} for p in exc.problems] or None
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
