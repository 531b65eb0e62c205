"""Contentful Personalization's (Ninetailed's) own bucketing, so its visitors keep their variants in Vary.

A space modelled with the ``nt_*`` types was served by Ninetailed's SDK before it was served by Vary.
If Vary bucketed those experiences with its own (GrowthBook) hash, every visitor in an experiment
would be re-randomised on the move: half of them would suddenly see the other arm. So experiences
compiled from ``nt_experience`` entries (``Experience.bucketing == "ninetailed"``) are assigned with
the SDK's arithmetic, re-stated here line for line from ``@ninetailed/experience.js-shared`` 7.7.0
(MIT; github.com/ninetailed-inc/experience.js, ``packages/sdks/shared/src/lib/utils/experiences/``:
``isExperienceMatch.ts``, ``getRandom.ts``, ``selectDistribution.ts``, ``selectVariant.ts``;
``packages/utils/javascript/src/lib/ExperienceMapper.ts`` for the ranges):

* ``random(text) = murmur3_32(text, seed 0) / 4294967295`` with the ``murmurhash-js`` package's
  MurmurHash3 (x86, 32 bit) — which reads each UTF-16 code unit's LOW BYTE (``charCodeAt(i) & 0xff``)
  and mixes in the string's length in code units. For ASCII ids that is plain MurmurHash3 over the
  bytes; for anything else it is what the browser computes, not MurmurHash3 of the UTF-8 bytes.
* traffic: the visitor takes part iff ``traffic > random("traffic-<experience id>-<stable id>")``
  (strictly greater, so traffic 1 leaves out the one hash equal to 2³²−1). Outside the traffic the
  SDK moves on to the NEXT experience of the entry (:func:`in_traffic` is checked before the arm).
* the arm: ``random("distribution-<experience id>-<stable id>")`` is looked up in the distribution's
  ranges ``[start_i, end_i]`` — ``start_i`` = the shares before ``i`` added left to right from 0, both
  ends inclusive, the first range that holds it wins — and no range at all means arm 0 (the
  baseline). An arm past the baseline's variants shows the baseline (Vary's compiler pads those arms
  with the baseline entry, so the content served is the same).

The experience id is the ``nt_experience`` entry's id (``Experience.id``), and the stable id is the
visitor id: Ninetailed's anonymous profile id plays that role, so a front end that passes the
Ninetailed profile id as Vary's visitor id keeps every assignment. Ninetailed has no holdout of its
own (arm 0 is its control) and no sticky assignment in this path: the hash alone decides, so
``Experience.holdout`` and stored sticky assignments are not used here.

Pure: stdlib only, no I/O; the cases in ``tests/personalization/decision/test_ninetailed_bucketing.py``
were computed by the published SDK under Node.
"""

from __future__ import annotations

from functools import lru_cache

from personalization.decision.thompson import plain_sum as _plain_sum
from personalization.types import Assignment, Experience

__all__ = [
    "murmur3_32",
    "ninetailed_random",
    "traffic_random",
    "distribution_random",
    "distribution_ranges",
    "select_arm",
    "in_traffic",
    "assign_ninetailed",
]

_MASK32 = 0xFFFFFFFF
#: ``UPPER_BOUND`` of the SDK's ``normalize``: the hash is divided by 2³²−1, not 2³².
_UPPER_BOUND = 4294967295
_C1 = 0xCC9E2D51
_C2 = 0x1B873593


def _code_unit_low_bytes(text: str) -> bytes:
    """``charCodeAt(i) & 0xff`` for every UTF-16 code unit, as ``murmurhash-js`` reads a string."""
    if text.isascii():
        return text.encode("ascii")
    return text.encode("utf-16-le", "surrogatepass")[0::2]


def murmur3_32(text: str, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit of ``text`` exactly as ``murmurhash-js`` 1.0.0 (``murmur3``) computes it."""
    data = _code_unit_low_bytes(text)
    length = len(data)  # == key.length: one byte per UTF-16 code unit
    h1 = seed & _MASK32
    tail_start = length - (length & 3)
    for i in range(0, tail_start, 4):
        k1 = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k1 = (k1 * _C1) & _MASK32
        k1 = ((k1 << 15) | (k1 >> 17)) & _MASK32
        k1 = (k1 * _C2) & _MASK32
        h1 ^= k1
        h1 = ((h1 << 13) | (h1 >> 19)) & _MASK32
        h1 = (h1 * 5 + 0xE6546B64) & _MASK32
    k1 = 0
    remainder = length & 3
    if remainder == 3:
        k1 ^= data[tail_start + 2] << 16
    if remainder >= 2:
        k1 ^= data[tail_start + 1] << 8
    if remainder >= 1:
        k1 ^= data[tail_start]
        k1 = (k1 * _C1) & _MASK32
        k1 = ((k1 << 15) | (k1 >> 17)) & _MASK32
        k1 = (k1 * _C2) & _MASK32
        h1 ^= k1
    h1 ^= length
    h1 ^= h1 >> 16
    h1 = (h1 * 0x85EBCA6B) & _MASK32
    h1 ^= h1 >> 13
    h1 = (h1 * 0xC2B2AE35) & _MASK32
    h1 ^= h1 >> 16
    return h1


def ninetailed_random(text: str) -> float:
    """The SDK's ``getRandom``: the hash normalised to [0, 1] (both ends reachable)."""
    return murmur3_32(text, 0) / _UPPER_BOUND


def traffic_random(experience_id: str, stable_id: str) -> float:
    """``getTrafficRandom``: decides whether the visitor takes part at all."""
    return ninetailed_random(f"traffic-{experience_id}-{stable_id}")


def distribution_random(experience_id: str, stable_id: str) -> float:
    """``getDistributionRandom``: decides the arm, independently of the traffic draw."""
    return ninetailed_random(f"distribution-{experience_id}-{stable_id}")


@lru_cache(maxsize=4096)
def distribution_ranges(shares: tuple[float, ...]) -> tuple[tuple[float, float], ...]:
    """``ExperienceMapper``'s ranges: the shares laid end to end, each end added left to right from 0.

    Summed in a plain loop, not ``sum()`` (which compensates rounding since Python 3.12), so every
    boundary is the same double the SDK's ``reduce((a, b) => a + b, 0)`` computes.
    """
    ranges: list[tuple[float, float]] = []
    start = 0.0
    for share in shares:
        end = start + share
        ranges.append((start, end))
        start = end
    return tuple(ranges)


def select_arm(random: float, shares: tuple[float, ...]) -> int:
    """``selectDistribution``: the first range holding ``random`` (ends inclusive); none → arm 0."""
    for index, (start, end) in enumerate(distribution_ranges(shares)):
        if start <= random <= end:
            return index
    return 0


def in_traffic(experience: Experience, stable_id: str) -> bool:
    """``isExperienceMatch``'s traffic half: ``trafficAllocation > traffic random``."""
    return experience.traffic_allocation > traffic_random(experience.id, stable_id)


def _describe(arm: int, experience: Experience) -> str:
    return "the baseline" if arm == 0 else f"variant {arm} ({experience.variants[arm - 1]})"


def assign_ninetailed(experience: Experience, stable_id: str) -> Assignment | None:
    """The SDK's choice for a visitor in the experience's audience; ``None``: outside its traffic.

    ``None`` means the caller moves on to the entry's next experience, as ``selectExperience`` does.
    The propensity is the arm's share (arm 0 also gets whatever no range covers).
    """
    if not in_traffic(experience, stable_id):
        return None
    weights = experience.weights
    shares = weights if type(weights) is tuple else tuple(weights)
    arm = select_arm(distribution_random(experience.id, stable_id), shares)
    if arm >= len(shares):  # pragma: no cover - select_arm returns an index of ``shares``
        arm = 0
    propensity = shares[arm] if arm else max(0.0, 1.0 - _plain_sum(shares[1:]))
    share = shares[arm]
    return Assignment(
        experience=experience,
        variant=arm,
        holdout=False,
        propensity=propensity,
        reason=(
            f"{experience.type}, Contentful Personalization's bucketing: {_describe(arm, experience)}, "
            f"distribution share {share:.0%}"
        ),
    )
