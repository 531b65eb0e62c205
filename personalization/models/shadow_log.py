"""How a policy in shadow compares with the live one, read back from the exposures it was logged on.

Every decision of a bandit experience with a shadow carries ``shadow_version``, ``shadow_variant``
and ``shadow_propensity`` (:mod:`personalization.decision.shadow`). The agreement rate — the share
of those decisions where the shadow would have served the variant the live policy served — says how
much activating it would change; its off-policy value is the launch gate's verdict
(:mod:`personalization.models.launch_gate`). Bounded: only the newest :data:`MAX_SHADOW_ROWS`
entries of each exposure stream partition are read (``XREVRANGE … COUNT``), never the whole stream.
"""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from personalization.store.exposures import EXPOSURE_STREAM
from personalization.store.partitions import all_streams
from personalization.types import EXPOSURE_DECODER

__all__ = ["MAX_SHADOW_ROWS", "ShadowAgreement", "shadow_agreement"]

MAX_SHADOW_ROWS = 20_000


class ShadowAgreement(msgspec.Struct, frozen=True, kw_only=True):
    """Of ``decisions`` logged with ``version`` in shadow, ``agreed`` served the shadow's choice."""

    experience: str
    version: str
    decisions: int
    agreed: int

    @property
    def rate(self) -> float | None:
        return self.agreed / self.decisions if self.decisions else None


async def shadow_agreement(
    redis: Redis, experience: str, version: str, *, partitions: int = 1, max_rows: int = MAX_SHADOW_ROWS
) -> ShadowAgreement:
    """Agreement of shadow ``version`` with the live policy on ``experience``'s newest exposures."""
    decisions = agreed = 0
    for stream in all_streams(EXPOSURE_STREAM, partitions):
        for _, fields in await redis.xrevrange(stream, count=max_rows):
            data = fields.get(b"data") or fields.get("data")
            if data is None:
                continue
            try:
                exposure = EXPOSURE_DECODER.decode(data)
            except msgspec.DecodeError:
                continue
            if exposure.experience != experience or exposure.shadow_version != version:
                continue
            decisions += 1
            agreed += exposure.shadow_variant == exposure.variant
    return ShadowAgreement(experience=experience, version=version, decisions=decisions, agreed=agreed)
