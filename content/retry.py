"""Retrying a content load that failed for a reason that may pass.

Contentful is a remote service: connections drop, a request times out, a node answers 500/502/503,
a burst of requests hits the rate limit (429). Those are worth a few more tries. A refused token
(401/403), an unknown space (404) or content in the wrong format (:class:`ContentAccessError`,
:class:`ContentFormatError`) will fail the same way again, so they are raised at once.

Backoff is exponential with *full jitter* (a uniform delay between 0 and the capped exponential), so
several workers that failed together do not retry together. A 429 that carries
``X-Contentful-RateLimit-Reset`` has already been waited out by the SDK (``max_rate_limit_retries``);
one that does not (the SDK would crash) reaches us as ``ContentSourceError(status=429)`` and is
retried here.

Blocking (it sleeps): run it off the event loop, around the whole ``source.sync(...)`` call — a
sync is safe to repeat from the same token.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from content.errors import ContentAccessError, ContentFormatError, ContentSourceError

__all__ = ["with_retries", "is_retryable", "backoff_delay"]

log = logging.getLogger("vary.content")

T = TypeVar("T")


def is_retryable(error: BaseException) -> bool:
    """Whether another try may succeed: no answer at all (network, timeout), 429, or a 5xx."""
    if not isinstance(error, ContentSourceError):
        return False
    if isinstance(error, (ContentAccessError, ContentFormatError)):
        return False
    return error.status is None or error.status == 429 or error.status >= 500


def backoff_delay(retry: int, base_delay: float, max_delay: float, rng: random.Random) -> float:
    """Full jitter: uniform in ``[0, min(max_delay, base_delay * 2**retry)]`` (``retry`` from 0)."""
    return rng.uniform(0.0, min(max_delay, base_delay * (2**retry)))


def with_retries(
    call: Callable[[], T],
    *,
    attempts: int = 4,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    sleep: Callable[[float], object] = time.sleep,
    rng: random.Random | None = None,
    what: str = "content sync",
) -> T:
    """``call()``, tried up to ``attempts`` times while it fails with a retryable error.

    Between tries it sleeps a full-jitter exponential delay (``rng`` makes it reproducible). Every
    retry is logged on ``vary.content``; the last error (or the first that is not retryable) is
    raised unchanged.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    rng = rng or random.Random()
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ContentSourceError as error:
            if attempt == attempts or not is_retryable(error):
                raise
            delay = backoff_delay(attempt - 1, base_delay, max_delay, rng)
            log.warning(
                "%s failed (%s: %s); retry %d of %d in %.2f s",
                what, _status(error), error, attempt, attempts - 1, delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _status(error: ContentSourceError) -> str:
    return f"HTTP {error.status}" if error.status is not None else "no response"
