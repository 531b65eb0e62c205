"""Posting a batch to an HTTP endpoint and classifying the answer: the part every HTTP sink shares.

A 2xx answer is a delivery. A network error, a 5xx or one of the sink's retryable statuses (408
and 429 everywhere; a sink may add more, e.g. 425) raises
:class:`~personalization.seams.SinkError`, which the runner retries; any other answer raises
:class:`~personalization.seams.PermanentSinkError` (a retry would get the same answer), which the
runner dead-letters at once. Error messages name the method, the URL and the first 200 characters
of the answer.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import httpx

from personalization.seams import PermanentSinkError, SinkError

__all__ = ["RETRYABLE_STATUSES", "post_batch"]

#: Statuses below 500 that a later attempt may get past: timeout, too many requests.
RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 429})


async def post_batch(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str],
    auth: httpx.Auth | None = None,
    retryable: Collection[int] = RETRYABLE_STATUSES,
) -> None:
    """``POST`` ``body`` to ``url``; returns on 2xx, raises :class:`SinkError` (retry) or
    :class:`PermanentSinkError` (dead-letter) otherwise (see the module docstring)."""
    try:
        if auth is None:
            response = await client.post(url, content=body, headers=headers)
        else:
            response = await client.post(url, content=body, auth=auth, headers=headers)
    except httpx.HTTPError as exc:
        raise SinkError(f"POST {url}: {type(exc).__name__}: {exc}") from exc
    status = response.status_code
    if 200 <= status < 300:
        return
    message = f"POST {url} answered {status}: {response.text[:200]}"
    if status >= 500 or status in retryable:
        raise SinkError(message)
    raise PermanentSinkError(message)
