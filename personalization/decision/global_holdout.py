"""The global holdout: a share of visitors who see the baseline of every experience.

Why a second, global holdout beside each experience's own: an experience's holdout answers "does
this experience help?"; the global one answers the marketer's first question, "does personalization
as a whole help?" — the treated visitors (everything Vary does) against visitors Vary leaves alone.

Membership is GrowthBook's hash v2 of (``vary-global-holdout``, visitor id), below the share ``s``:
deterministic, no storage, the same on every worker and in any notebook. Every personalize request of
a visitor who consented to personalization logs one extra exposure of the reserved experience
``_global``: ``variant=1`` (treated, propensity 1 − s) or ``variant=0, holdout=True`` (propensity s), so
the aggregator counts it like any experience and ``GET /v1/lift`` reads its results. A held-out
visitor's per-entry exposures carry no experience (they are counted as content).
"""

from __future__ import annotations

from functools import lru_cache

from personalization.decision.bucketing import bucket_hash
from personalization.types import Assignment

__all__ = [
    "GLOBAL_EXPERIENCE",
    "GLOBAL_HOLDOUT_SEED",
    "MAX_GLOBAL_HOLDOUT",
    "global_share",
    "held_out_assignment",
    "in_global_holdout",
]

#: The reserved experience key of the global holdout's exposures and aggregates.
GLOBAL_EXPERIENCE = "_global"
GLOBAL_HOLDOUT_SEED = "vary-global-holdout"
#: The largest share allowed: more would hold back most visitors from everything.
MAX_GLOBAL_HOLDOUT = 0.5


def global_share(content: float | None, fallback: float) -> float:
    """The share in force: content's (the ``varySettings`` entry) when set, else the environment's;
    clamped to [0, :data:`MAX_GLOBAL_HOLDOUT`] so a bad value can never hold back everyone."""
    share = fallback if content is None else content
    if not share > 0.0:  # also NaN
        return 0.0
    return min(share, MAX_GLOBAL_HOLDOUT)


def in_global_holdout(visitor_id: str, share: float) -> bool:
    """Whether the visitor is in the global holdout of ``share`` (hash v2 < share)."""
    return share > 0.0 and (bucket_hash(GLOBAL_HOLDOUT_SEED, visitor_id, 2) or 0.0) < share


@lru_cache(maxsize=64)
def held_out_assignment(share: float) -> Assignment:
    """What every entry of a globally held-out visitor gets: the baseline, no experience.

    Cached: the share changes only with content, and an Assignment is frozen (issue 22)."""
    return Assignment(
        experience=None,
        variant=0,
        holdout=False,
        propensity=1.0,
        reason=f"global holdout: baseline content for every experience ({share * 100:g}% of visitors)",
    )
