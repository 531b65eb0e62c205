"""Recording deferred exposures: verify each token, count each exposure once, queue it.

The front end sends ``exposure_token``s back when components come into view (see
:mod:`personalization.store.exposure_tokens`). A token may arrive twice — a beacon retried, a page restored
from the back-forward cache, a tab that observes again — and the aggregation de-duplicates by *stream
entry id*, not by exposure id (a second ``XADD`` of the same exposure would be counted again). So each
exposure id is claimed first with ``SET vary:exposure:seen:<id> 1 NX EX <ttl>`` (one pipelined round
trip for the batch): only the first claim queues the exposure; later ones are reported as duplicates.
The claim outlives the token (``ttl`` > token lifetime), so no valid token can be counted twice.

The exposure's ``ts`` becomes the time it was seen (when the token arrives), not the time of the
decision: events are attributed to exposures that happened before them, and the visitor was exposed
when they saw the component.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgspec import Struct
from msgspec.structs import replace
from redis.asyncio import Redis

from personalization.seams import ExposureSink
from personalization.store.exposure_tokens import ExposureTokenError, ExposureTokens
from personalization.store.keys import EXPOSURE_SEEN_PREFIX
from personalization.types import Exposure

__all__ = ["DeferredExposures", "RejectedToken"]


class RejectedToken(Struct, frozen=True, kw_only=True):
    index: int
    reason: str


class DeferredExposures:
    """Verifies exposure tokens and queues each exposure once through the exposure sink."""

    def __init__(self, redis: Redis, sink: ExposureSink, tokens: ExposureTokens) -> None:
        self._redis = redis
        self._sink = sink
        self._tokens = tokens
        #: Longer than any token lives, so a still-valid token always finds its claim.
        self._claim_ttl_s = tokens.ttl_s + 3_600

    def verify(self, tokens: Sequence[str], now: float) -> tuple[list[tuple[int, Exposure]], list[RejectedToken]]:
        """Split a batch into verified exposures (with their index) and rejected tokens."""
        good: list[tuple[int, Exposure]] = []
        rejected: list[RejectedToken] = []
        for index, token in enumerate(tokens):
            try:
                good.append((index, self._tokens.verify(token, now)))
            except ExposureTokenError as exc:
                rejected.append(RejectedToken(index=index, reason=exc.reason))
        return good, rejected

    async def record(self, exposures: Sequence[Exposure], now: float, derived: Sequence[Exposure] = ()) -> int:
        """Queue the exposures not recorded before (claimed in one round trip); returns how many of
        ``exposures`` were. ``derived``: exposures the server adds itself (a local ``decide()`` call's
        ``_global`` one), claimed and queued in the same round trip but not counted; one whose id is
        also among ``exposures`` is that item. Raises when Redis cannot be reached: nothing is queued
        then, and a retry is safe."""
        unique: dict[str, tuple[Exposure, bool]] = {}
        for exposure in exposures:
            unique.setdefault(exposure.id, (exposure, True))
        for exposure in derived:
            unique.setdefault(exposure.id, (exposure, False))
        if not unique:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for exposure_id in unique:
            pipe.set(EXPOSURE_SEEN_PREFIX + exposure_id, 1, nx=True, ex=self._claim_ttl_s)
        claimed = await pipe.execute()
        fresh = [(exposure, counted) for (exposure, counted), won in zip(unique.values(), claimed) if won]
        if fresh:
            self._sink.submit([replace(exposure, ts=now) for exposure, _ in fresh], ())
        return sum(counted for _, counted in fresh)
