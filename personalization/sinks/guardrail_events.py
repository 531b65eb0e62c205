"""Guardrail pauses told to every sink: a receiver (an alerting webhook, a data warehouse) learns that a
variant was paused automatically, and why, without polling ``/v1/experiences``.

The same path as erase notices (:mod:`personalization.sinks.erasures`): the monitor that paused the
variant — only the call of :func:`~personalization.store.pauses.pause_variant` that returned ``True``,
so one pause is one notice however many aggregator processes saw the harm — appends a
:class:`GuardrailPaused` to the stream ``vary:sinks:guardrails``
(:data:`~personalization.store.keys.SINK_GUARDRAILS`); every sink runner reads it with its own consumer
group, delivers at least once, retries and dead-letters like any record. A sink receives it with
``kind="guardrail_paused"``. It holds no visitor data, so it is not trimmed on delivery; the stream
is capped at :data:`MAX_NOTICES` entries.
"""

from __future__ import annotations

import time

import msgspec
from redis.asyncio import Redis

from personalization.store.keys import SINK_GUARDRAILS

__all__ = ["GUARDRAIL_DECODER", "MAX_NOTICES", "GuardrailPaused", "notify_guardrail_paused"]

#: Entries kept in the stream (approximately): pauses are rare, and a receiver far behind loses the oldest.
MAX_NOTICES = 10_000


class GuardrailPaused(msgspec.Struct, frozen=True, kw_only=True):
    """``variant`` of ``experience`` was paused at ``ts`` in ``phase`` because guardrail ``metric``
    established harm; ``reason`` gives the numbers (``csat −12.0 pts [−18.1, −5.9], 412 vs 398 answers``)."""

    type: str = "guardrail_paused"
    experience: str
    variant: int
    metric: str
    reason: str
    phase: int
    ts: float


GUARDRAIL_DECODER = msgspec.json.Decoder(GuardrailPaused)
_ENCODER = msgspec.json.Encoder()


async def notify_guardrail_paused(
    redis: Redis, *, experience: str, variant: int, metric: str, reason: str, phase: int,
    now: float | None = None,
) -> str:
    """Append the notice every sink delivers; returns its stream id."""
    notice = GuardrailPaused(experience=experience, variant=variant, metric=metric, reason=reason,
                             phase=phase, ts=time.time() if now is None else now)
    entry_id = await redis.xadd(SINK_GUARDRAILS, {"data": _ENCODER.encode(notice)},
                                maxlen=MAX_NOTICES, approximate=True)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
