"""Variants a guardrail paused, shared by every worker through one Redis hash.

Why a hash of experience → JSON and not one key per variant: every worker refreshes the whole set
every ``VARY_STATE_REFRESH_S`` with one ``HGETALL`` (``api/runtime.py``), and the decision path reads
only that in-memory copy — a pause costs no Redis round trip per request.

* :func:`pause_variant` adds a variant atomically (``scripts/pause_variant.lua``): when several
  aggregator processes see the same harm, exactly one call returns ``True`` and emits the sink event.
  A pause a person resumed (:func:`resume`) is not re-applied by the same guardrail in the same phase.
* A pause belongs to the phase it was made in (``phase`` in its record): a new phase (a set-up edit
  that changes assignment, :mod:`personalization.store.phases`) may renumber variants, so the serving
  overlay applies only the current phase's pauses (:func:`load_pauses` with ``phases``).

Key layout: ``vary:guardrail:paused`` and ``vary:guardrail:resumed`` (:mod:`personalization.store.keys`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis

from personalization.store.keys import GUARDRAIL_PAUSES_KEY, GUARDRAIL_RESUMED_KEY
from personalization.types import phase_key

__all__ = ["PauseRecord", "load_pause_records", "load_pauses", "pause_variant", "resume", "resumed"]

PAUSE_VARIANT = (Path(__file__).parent / "scripts" / "pause_variant.lua").read_text()
UNPAUSE_VARIANT = (Path(__file__).parent / "scripts" / "unpause_variant.lua").read_text()


class PauseRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One paused variant: why (``reason``, shown to visitors' decisions and on the dashboard), by
    which guardrail ``metric``, when (``at``, epoch s) and in which ``phase``."""

    reason: str
    metric: str
    at: float
    phase: int = 1


_RECORDS = msgspec.json.Decoder(dict[str, PauseRecord])
_ENCODE = msgspec.json.Encoder()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: bytes | str) -> dict[int, PauseRecord]:
    """One experience's field; a malformed one (never written by Vary) counts as no pause."""
    try:
        records = _RECORDS.decode(raw)
    except msgspec.DecodeError:
        return {}
    return {int(variant): record for variant, record in records.items() if variant.isdigit()}


async def load_pause_records(redis: Redis) -> dict[str, dict[int, PauseRecord]]:
    """Every pause with its record: experience → variant → :class:`PauseRecord` (one ``HGETALL``)."""
    raw: dict[Any, Any] = await redis.hgetall(GUARDRAIL_PAUSES_KEY)
    pauses = {_text(experience): _decode(value) for experience, value in raw.items()}
    return {experience: variants for experience, variants in pauses.items() if variants}


async def load_pauses(redis: Redis, phases: Mapping[str, int] | None = None) -> dict[str, dict[int, str]]:
    """Experience → paused variant → reason (one ``HGETALL``). With ``phases`` (experience → current
    phase, 1 when absent), only the pauses made in each experience's current phase."""
    loaded: dict[str, dict[int, str]] = {}
    for experience, records in (await load_pause_records(redis)).items():
        current = phases.get(experience, 1) if phases is not None else None
        reasons = {
            variant: record.reason
            for variant, record in records.items()
            if current is None or record.phase == current
        }
        if reasons:
            loaded[experience] = reasons
    return loaded


def _resumed_field(experience: str, phase: int, variant: int, metric: str) -> str:
    return f"{phase_key(experience, phase)}:{variant}:{metric}"


async def pause_variant(
    redis: Redis, experience: str, variant: int, reason: str, metric: str, phase: int, now: float
) -> bool:
    """Pause ``variant`` of ``experience``; ``True`` only for the call that paused it (``False`` when
    it already was paused, or when a person resumed this guardrail's pause in this phase)."""
    if variant < 1:
        raise ValueError(f"variant {variant}: only variants 1.. can be paused (0 is the baseline)")
    resumed_field = _resumed_field(experience, phase, variant, metric)
    if await redis.hexists(GUARDRAIL_RESUMED_KEY, resumed_field):
        return False
    record = _ENCODE.encode(PauseRecord(reason=reason, metric=metric, at=now, phase=phase))
    paused = await redis.eval(PAUSE_VARIANT, 1, GUARDRAIL_PAUSES_KEY, experience, str(variant), record)
    if int(paused) != 1:
        return False
    # A person may have resumed it between the check above and the pause: :func:`resume` records the
    # resume before it deletes the pauses, so looking again here sees it, and this pause is taken back.
    # (The two hashes are in different cluster slots: no one script can hold both.)
    if await redis.hexists(GUARDRAIL_RESUMED_KEY, resumed_field):
        await redis.eval(UNPAUSE_VARIANT, 1, GUARDRAIL_PAUSES_KEY, experience, str(variant), record)
        return False
    return True


async def resume(redis: Redis, experience: str, phase: int, now: float | None = None) -> list[int]:
    """Lift every pause of ``experience``; returns the variants resumed (sorted). Each is recorded in
    ``vary:guardrail:resumed`` under ``phase``, so the same guardrail does not pause it again in that
    phase. The resume is recorded *before* the pauses are deleted, so a guardrail monitor pausing the
    variant meanwhile sees it and takes its pause back (:func:`pause_variant`); the final read and the
    delete are one transaction, and a pause made since the first read is recorded as resumed too."""
    at = str(time.time() if now is None else now)

    async def record(found: dict[int, PauseRecord]) -> None:
        if found:
            await redis.hset(
                GUARDRAIL_RESUMED_KEY,
                mapping={_resumed_field(experience, phase, v, r.metric): at for v, r in found.items()},
            )

    first = await redis.hget(GUARDRAIL_PAUSES_KEY, experience)
    seen = _decode(first) if first is not None else {}
    await record(seen)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hget(GUARDRAIL_PAUSES_KEY, experience)
        pipe.hdel(GUARDRAIL_PAUSES_KEY, experience)
        raw, _ = await pipe.execute()
    if raw is None:
        return []
    records = _decode(raw)
    await record({v: r for v, r in records.items() if seen.get(v) != r})
    return sorted(records)


async def resumed(redis: Redis, experience: str, phase: int) -> set[tuple[int, str]]:
    """``(variant, metric)`` pairs a person resumed in this phase of ``experience``."""
    prefix = f"{phase_key(experience, phase)}:"
    found: set[tuple[int, str]] = set()
    async for field, _ in redis.hscan_iter(GUARDRAIL_RESUMED_KEY, match=_escape_glob(prefix) + "*"):
        rest = _text(field)[len(prefix):]
        variant, _, metric = rest.partition(":")
        if variant.isdigit() and metric:
            found.add((int(variant), metric))
    return found


def _escape_glob(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
