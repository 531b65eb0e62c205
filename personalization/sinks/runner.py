"""The sink runner: exposures and events from the Redis streams to one sink, off the request path.

Decisions and events only ever ``XADD``; a sink never sees a request. Each sink has its own consumer
group, ``vary-sink-<name>``, on every exposure and event stream (all partitions,
:func:`sink_streams`), so sinks progress independently of each other and of the aggregator, and
several runners of one sink (``vary serve`` workers, ``vary sinks`` processes) share its work.

One pass over a stream:

1. ``XAUTOCLAIM`` entries another consumer of the group read but did not acknowledge within
   ``claim_idle_s`` — a runner that died mid-batch — so they are delivered by this one;
2. ``XREADGROUP`` new entries (up to ``batch_size``);
3. ``sink.deliver(batch)``; a failure is retried with exponential backoff (``backoff_s`` · 2ⁿ, at
   most ``max_backoff_s``) up to ``max_attempts`` deliveries in all; a
   :class:`~personalization.seams.PermanentSinkError` is not retried;
4. after a delivery, ``XACK``; after the last failed attempt, each entry is copied to the dead-letter
   stream ``vary:sinks:dead:<name>`` (with the error and the attempts) and then acknowledged. An
   entry that does not decode is dead-lettered at once.

Nothing is acknowledged that was neither delivered nor dead-lettered, so delivery is at least once:
a runner stopped between delivering and acknowledging delivers that batch again after restart. Each
record carries a stable ``message_id`` receivers can deduplicate on. ``claim_idle_s`` must exceed the
longest a batch can spend in retries, or a live runner's batch is claimed by another.

A new group starts at the end of the streams (``$``): a sink receives what is written after it was
first started, not the history (export that with ``vary export``).

Every sink also reads ``vary:sinks:erasures``, whatever ``kinds`` it declares: an erased visitor's
notice reaches each receiver as a record of ``kind="erase"`` (:mod:`personalization.sinks.erasures`),
and once delivered the notice is trimmed as soon as no group still owes it. Likewise
``vary:sinks:guardrails``: a variant a guardrail paused arrives as ``kind="guardrail_paused"``
(:mod:`personalization.sinks.guardrail_events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from personalization.measurement.stored_events import STORED_EVENT_DECODER
from personalization.seams import EventSink, PermanentSinkError, SinkRecord
from personalization.sinks.erasures import ERASE_DECODER, trim_delivered
from personalization.sinks.guardrail_events import GUARDRAIL_DECODER
from personalization.store.keys import (
    EVENTS,
    EXPOSURES,
    SINK_ERASURES,
    SINK_GUARDRAILS,
    dead_letter_stream,
)
from personalization.store.partitions import all_streams
from personalization.types import EXPOSURE_DECODER

__all__ = ["SinkRunner", "SinkStats", "group_name", "sink_streams"]

log = logging.getLogger("vary.sinks")

Kind = Literal["exposure", "event", "erase", "guardrail_paused"]
_DECODERS = {"exposure": EXPOSURE_DECODER, "event": STORED_EVENT_DECODER, "erase": ERASE_DECODER,
             "guardrail_paused": GUARDRAIL_DECODER}


def group_name(sink_name: str) -> str:
    """The consumer group of a sink on every stream it reads."""
    return f"vary-sink-{sink_name}"


def sink_streams(
    partitions: int, kinds: Sequence[Kind] = ("exposure", "event", "erase")
) -> list[tuple[str, Kind]]:
    """Every stream a sink reads: all partitions of the exposure and/or event streams, the erase
    notices, and the guardrail pauses (``guardrail_paused`` in ``kinds``)."""
    streams: list[tuple[str, Kind]] = []
    if "exposure" in kinds:
        streams += [(name, "exposure") for name in all_streams(EXPOSURES, partitions)]
    if "event" in kinds:
        streams += [(name, "event") for name in all_streams(EVENTS, partitions)]
    if "erase" in kinds:
        streams.append((SINK_ERASURES, "erase"))
    if "guardrail_paused" in kinds:
        streams.append((SINK_GUARDRAILS, "guardrail_paused"))
    return streams


@dataclass(slots=True)
class SinkStats:
    """What one runner has done since it started (``GET /v1/plugins`` shows it)."""

    delivered: int = 0
    batches: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
    claimed: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_delivery_at: float | None = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field(fields: dict[Any, Any], name: str) -> bytes | None:
    value = fields.get(name.encode(), fields.get(name))
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode()


class SinkRunner:
    """Feeds one sink from the streams (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        sink: EventSink,
        *,
        consumer: str,
        partitions: int = 1,
        batch_size: int = 100,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        claim_idle_s: float = 300.0,
        idle_sleep_s: float = 0.25,
        delivery_timeout_s: float = 30.0,
        start_id: str = "$",
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        if max_attempts < 1 or batch_size < 1:
            raise ValueError("max_attempts and batch_size must be >= 1")
        self.redis = redis
        self.sink = sink
        self.consumer = consumer
        kinds: Sequence[Kind] = getattr(sink, "kinds", ("exposure", "event"))
        # Every receiver hears of erasures and guardrail pauses, whatever kinds it declares.
        self.streams = sink_streams(partitions, (*kinds, "erase", "guardrail_paused"))
        self.group = group_name(sink.name)
        self.dead_stream = dead_letter_stream(sink.name)
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.claim_idle_s = claim_idle_s
        self.idle_sleep_s = idle_sleep_s
        self.delivery_timeout_s = delivery_timeout_s
        self.start_id = start_id
        self.stats = SinkStats()
        self._stop = asyncio.Event()
        self._sleep = sleep

    async def ensure_groups(self) -> None:
        """Create the sink's group on every stream (``MKSTREAM``); an existing group is kept."""
        for stream, _ in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id=self.start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed delivery number ``attempt`` (1-based)."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Passes until ``stop`` is set; an error in one pass (Redis down) is logged and retried."""
        stop = stop or self._stop
        self._stop = stop
        while not stop.is_set():
            try:
                handled = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sink %s: pass failed (%s); retrying", self.sink.name, exc)
                handled = 0
                await self._wait(1.0)
                if "NOGROUP" in str(exc):  # the stream was deleted (or never reached): create again
                    with contextlib.suppress(Exception):
                        await self.ensure_groups()
            if not handled:
                await self._wait(self.idle_sleep_s)

    async def run_once(self) -> int:
        """One pass over every stream: claim stale entries, read new ones, deliver. Returns entries handled."""
        handled = 0
        for stream, kind in self.streams:
            if self._stop.is_set():
                break
            handled += await self._claim(stream, kind)
            response = await self.redis.xreadgroup(
                self.group, self.consumer, {stream: ">"}, count=self.batch_size
            )
            for _, entries in response or ():
                if entries:
                    handled += len(entries)
                    await self._handle(stream, kind, entries)
        return handled

    async def _claim(self, stream: str, kind: Kind) -> int:
        result = await self.redis.xautoclaim(
            stream, self.group, self.consumer, int(self.claim_idle_s * 1000), start_id="0-0",
            count=self.batch_size,
        )
        entries = [entry for entry in result[1] if entry and entry[1]] if result else []
        if entries:
            self.stats.claimed += len(entries)
            log.info("sink %s: claimed %d stale entries of %s", self.sink.name, len(entries), stream)
            await self._handle(stream, kind, entries)
        return len(entries)

    def _decode(self, stream: str, kind: Kind, entry_id: str, fields: dict[Any, Any]) -> SinkRecord:
        data = _field(fields, "data")
        if data is None:
            raise ValueError("no data field")
        record = _DECODERS[kind].decode(data)
        return SinkRecord(kind=kind, stream=stream, entry_id=entry_id, record=record)

    async def _handle(self, stream: str, kind: Kind, entries: list[Any]) -> None:
        records: list[SinkRecord] = []
        raw: dict[str, dict[Any, Any]] = {}
        undecodable: list[tuple[str, str]] = []
        for entry_id, fields in entries:
            entry_id = _text(entry_id)
            raw[entry_id] = fields
            try:
                records.append(self._decode(stream, kind, entry_id, fields))
            except (msgspec.DecodeError, ValueError) as exc:
                undecodable.append((entry_id, f"undecodable: {exc}"))
        if undecodable:
            await self._dead_letter(stream, kind, [(i, raw[i]) for i, _ in undecodable], undecodable[0][1], 0)
        if not records:
            return
        attempt = 0
        while True:
            attempt += 1
            try:
                async with asyncio.timeout(self.delivery_timeout_s):
                    await self.sink.deliver(records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                self.stats.failed_attempts += 1
                self.stats.last_error = error
                self.stats.last_error_at = time.time()
                if isinstance(exc, PermanentSinkError) or attempt >= self.max_attempts:
                    log.error("sink %s: %d entries of %s dead-lettered after %d attempt(s): %s",
                              self.sink.name, len(records), stream, attempt, error)
                    await self._dead_letter(stream, kind, [(r.entry_id, raw[r.entry_id]) for r in records],
                                            error, attempt)
                    return
                delay = self.backoff(attempt)
                log.warning("sink %s: delivery attempt %d failed (%s); retrying in %.2g s",
                            self.sink.name, attempt, error, delay)
                if await self._wait(delay):
                    return  # stopping: left pending, another runner (or this one, later) claims them
                continue
            await self.redis.xack(stream, self.group, *(r.entry_id for r in records))
            if kind == "erase":  # the visitor id in clear stays no longer than some sink owes it
                await trim_delivered(self.redis)
            self.stats.delivered += len(records)
            self.stats.batches += 1
            self.stats.last_delivery_at = time.time()
            return

    async def _dead_letter(
        self, stream: str, kind: Kind, entries: list[tuple[str, dict[Any, Any]]], error: str, attempts: int
    ) -> None:
        """Copy the entries to the dead-letter stream, then acknowledge them: never lost, never stuck."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, fields in entries:
                pipe.xadd(self.dead_stream, {
                    "stream": stream,
                    "entry_id": entry_id,
                    "kind": kind,
                    "data": _field(fields, "data") or b"",
                    "error": error,
                    "attempts": attempts,
                    "sink": self.sink.name,
                    "ts": time.time(),
                })
            await pipe.execute()
        await self.redis.xack(stream, self.group, *(entry_id for entry_id, _ in entries))
        if kind == "erase":
            await trim_delivered(self.redis)
        self.stats.dead_lettered += len(entries)

    async def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when stopping was asked for meanwhile."""
        if self._sleep is not None:
            await self._sleep(seconds)
            return self._stop.is_set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    async def aclose(self) -> None:
        """Stop and close the sink's own resources (its HTTP client)."""
        self._stop.set()
        close = getattr(self.sink, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
