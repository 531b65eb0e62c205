"""Erase notices for sinks, and erasing a visitor from the sinks' dead letters.

An erase in Vary cannot reach what a sink already delivered (a webhook receiver's database, a
Segment workspace), so every sink is told: ``DELETE /v1/visitors/{id}`` appends a
:class:`VisitorErased` to the stream ``vary:sinks:erasures``
(:data:`~personalization.store.keys.SINK_ERASURES`), and every sink runner reads that stream with its
own consumer group, like the exposure and event streams — delivered at least once, retried with
backoff, dead-lettered when it keeps failing (:mod:`personalization.sinks.runner`). The record a
sink receives has ``kind="erase"``; the webhook sink posts it like any other record, the Segment
sink cannot map it (its Tracking API has no delete call: see :mod:`personalization.sinks.segment`).

The notice holds the visitor id in clear — the receiver needs it — so it is kept only until every
sink's group has delivered it (:func:`trim_delivered`, after each delivery), and never longer than
:data:`NOTICE_TTL_S` whatever a stalled or removed sink still owes.

A sink's dead letters (``vary:sinks:dead:<sink>``) are copies of entries that could not be delivered;
:func:`erase_dead_letters` deletes the visitor's from each of them.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from personalization.store.keys import SINK_ERASURES

__all__ = [
    "ERASE_DECODER",
    "NOTICE_TTL_S",
    "VisitorErased",
    "erase_dead_letters",
    "notify_sinks",
    "trim_delivered",
]

#: The longest an erase notice waits for a sink: a week.
NOTICE_TTL_S = 7 * 86_400.0
#: Dead-letter entries read per ``XRANGE``.
_CHUNK = 1000


class VisitorErased(msgspec.Struct, frozen=True, kw_only=True):
    """The record of an erase notice: this visitor was erased at ``ts``; delete what you hold."""

    visitor_id: str
    ts: float


ERASE_DECODER = msgspec.json.Decoder(VisitorErased)
_ENCODER = msgspec.json.Encoder()


class _DeadRecord(msgspec.Struct):
    visitor_id: str | None = None


_DEAD_DECODER = msgspec.json.Decoder(_DeadRecord)


async def notify_sinks(redis: Redis, visitor_id: str, now: float | None = None) -> str:
    """Append the erase notice every sink delivers; returns its stream id."""
    notice = VisitorErased(visitor_id=visitor_id, ts=time.time() if now is None else now)
    entry_id = await redis.xadd(SINK_ERASURES, {"data": _ENCODER.encode(notice)})
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _after(entry_id: str) -> str:
    """The smallest stream id greater than ``entry_id``."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


async def trim_delivered(redis: Redis, now: float | None = None) -> int:
    """Remove the notices every group has delivered and acknowledged, and any older than
    :data:`NOTICE_TTL_S`; returns how many went."""
    try:
        groups = await redis.xinfo_groups(SINK_ERASURES)
    except ResponseError:  # no stream yet
        return 0
    if not groups:  # no sink reads the notices: nobody is owed one
        return int(await redis.xtrim(SINK_ERASURES, maxlen=0, approximate=False))
    needed: list[str] = []  # per group, the first notice it still needs
    for group in groups:
        if int(group.get("pending", 0)):
            summary = await redis.xpending(SINK_ERASURES, _text(group["name"]))
            needed.append(_text(summary["min"]))
        else:
            needed.append(_after(_text(group["last-delivered-id"])))
    keep_from = min(needed, key=_id_key)
    floor = f"{int(((time.time() if now is None else now) - NOTICE_TTL_S) * 1000)}-0"
    if _id_key(keep_from) < _id_key(floor):
        keep_from = floor
    return int(await redis.xtrim(SINK_ERASURES, minid=keep_from, approximate=False))


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _dead_visitor(data: bytes) -> str | None:
    """The visitor of a dead-lettered record: an exposure, an event or an erase notice."""
    try:
        record = _DEAD_DECODER.decode(data)
    except msgspec.DecodeError:
        return None
    return record.visitor_id


async def erase_dead_letters(redis: Redis, streams: list[str], visitor_id: str) -> int:
    """``XDEL`` the visitor's entries from each dead-letter stream in ``streams``; returns how many."""
    deleted = 0
    for stream in streams:
        start = "-"
        while True:
            entries = await redis.xrange(stream, min=start, max="+", count=_CHUNK)
            if not entries:
                break
            mine = []
            for entry_id, fields in entries:
                data = fields.get(b"data", fields.get("data"))
                if data is not None and _dead_visitor(data if isinstance(data, bytes) else str(data).encode()) == visitor_id:
                    mine.append(entry_id)
            if mine:
                deleted += int(await redis.xdel(stream, *mine))
            if len(entries) < _CHUNK:
                break
            start = "(" + _text(entries[-1][0])
    return deleted
