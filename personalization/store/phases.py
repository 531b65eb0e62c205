"""Experience phases in Redis: a new phase on every content edit that changes assignment.

Each experience has one hash (``vary:phases:{<x>}``, :func:`~personalization.store.keys.phases_key`):
field ``<n>`` holds phase n's record (fingerprint of the assignment set-up, when it started, the CMS
edit time it came from, what changed, and the set-up itself so the next change can be described),
field ``current`` the current n. The first record of an experience is phase 1 — everything logged
before phases existed is phase 1 too.

:func:`record_phases` runs when a worker applies a snapshot. A new phase is appended only when the
fingerprint differs from the current phase's **and** the experience's ``updated_at`` is not older
than the current phase's: a worker still on an older snapshot cannot flip the phase back. An unknown
``updated_at`` (content not from a CMS) counts as older than any known one. The append is a
compare-and-set in Lua (``scripts/append_phase.lua``), so workers applying the same snapshot at once
append the phase once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from redis.asyncio import Redis

from personalization.decision.phases import (
    assignment_fingerprint,
    assignment_setup,
    describe_changes,
)
from personalization.measurement.ranges import iso_utc
from personalization.store.keys import phases_key
from personalization.types import Experience

__all__ = ["Phase", "current_phases", "list_phases", "record_phase", "record_phases"]

APPEND_PHASE = (Path(__file__).parent / "scripts" / "append_phase.lua").read_text()
#: Compare-and-set attempts per experience before leaving it to the next snapshot apply.
_ATTEMPTS = 3


class Phase(msgspec.Struct, frozen=True, kw_only=True):
    """One phase of an experience, as results and the dashboard show it."""

    phase: Annotated[int, Meta(description="The phase number, from 1.")]
    fingerprint: Annotated[
        str, Meta(description="Digest of the set-up this phase runs (weights, variants, audience, …).")
    ]
    started_at: Annotated[float, Meta(description="When the phase started, Unix seconds.")]
    updated_at: (
        Annotated[float, Meta(description="The CMS edit time of the set-up this phase runs (`None`: not from a CMS).")]
        | None
    )
    changes: Annotated[list[str], Meta(description="What changed from the previous phase (empty for phase 1).")] = []
    started_at_iso: Annotated[str, Meta(description="`started_at` in ISO 8601 UTC.")] | None = None
    updated_at_iso: Annotated[str, Meta(description="`updated_at` in ISO 8601 UTC.")] | None = None


class _Stored(msgspec.Struct, kw_only=True):
    """A phase record as stored (the :class:`Phase` fields plus the set-up, for the next diff)."""

    phase: int
    fingerprint: str
    started_at: float
    updated_at: float | None = None
    changes: list[str] = []
    setup: dict[str, Any] = {}


_DECODE = msgspec.json.Decoder(_Stored)
_ENCODE = msgspec.json.Encoder()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _public(stored: _Stored) -> Phase:
    return Phase(
        phase=stored.phase,
        fingerprint=stored.fingerprint,
        started_at=stored.started_at,
        updated_at=stored.updated_at,
        changes=list(stored.changes),
        started_at_iso=iso_utc(stored.started_at),
        updated_at_iso=iso_utc(stored.updated_at),
    )


async def list_phases(redis: Redis, experience: str) -> list[Phase]:
    """Every phase of ``experience``, oldest first (empty before its first record)."""
    raw: dict[Any, Any] = await redis.hgetall(phases_key(experience))
    phases = []
    for field, value in raw.items():
        if _text(field).isdigit():
            try:
                phases.append(_public(_DECODE.decode(value)))
            except msgspec.DecodeError:
                continue  # never written by Vary: not a phase
    return sorted(phases, key=lambda phase: phase.phase)


async def current_phases(redis: Redis, experiences: Iterable[str]) -> dict[str, int]:
    """Experience → current phase (1 for one never recorded); one pipelined ``HGET`` each."""
    keys = list(experiences)
    if not keys:
        return {}
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.hget(phases_key(key), "current")
    values = await pipe.execute()
    return {key: int(value) if value is not None else 1 for key, value in zip(keys, values, strict=True)}


async def _current(redis: Redis, key: str) -> tuple[int, _Stored | None]:
    current = await redis.hget(key, "current")
    if current is None:
        return 0, None
    n = int(current)
    raw = await redis.hget(key, str(n))
    return n, _DECODE.decode(raw) if raw is not None else None


def _not_older(updated_at: float | None, than: float | None) -> bool:
    return (-math.inf if updated_at is None else updated_at) >= (-math.inf if than is None else than)


async def record_phase(redis: Redis, experience: Experience, now: float) -> int:
    """Record ``experience``'s set-up (see the module docstring); returns its current phase."""
    key = phases_key(experience.key)
    setup = assignment_setup(experience)
    fingerprint = assignment_fingerprint(setup)
    n = 0
    for _ in range(_ATTEMPTS):
        n, record = await _current(redis, key)
        if record is not None and (
            record.fingerprint == fingerprint or not _not_older(experience.updated_at, record.updated_at)
        ):
            return n
        new = _Stored(
            phase=n + 1,
            fingerprint=fingerprint,
            started_at=now,
            updated_at=experience.updated_at,
            changes=describe_changes(record.setup, setup) if record is not None and record.setup else [],
            setup=setup,
        )
        result = await redis.eval(APPEND_PHASE, 1, key, str(n), _ENCODE.encode(new))
        if int(result[1]) == 1:
            return int(result[0])
    return max(n, 1)


async def record_phases(redis: Redis, experiences: Iterable[Experience], now: float) -> dict[str, int]:
    """:func:`record_phase` for every experience; experience key → current phase."""
    listed = list(experiences)
    phases = await asyncio.gather(*(record_phase(redis, experience, now) for experience in listed))
    return {experience.key: phase for experience, phase in zip(listed, phases, strict=True)}
