"""The Segment sink: exposures and events as track calls to Segment's HTTP Tracking API.

``POST <url>/v1/batch`` with HTTP basic auth (the write key as the user name, no password) and::

    {"batch": [{"type": "track", "event": "Experience Viewed", "anonymousId": "visitor-42",
                "properties": {...}, "timestamp": "2026-03-01T12:00:00.000Z",
                "messageId": "vary-exposure-…", "context": {"library": {"name": "vary"}}}, …],
     "sentAt": "…"}

Any Segment-compatible collector works (RudderStack, Jitsu, a local test server): ``url`` defaults
to ``https://api.segment.io``. Vary's visitor ids are anonymous ids; a record without one (an
exposure of a visitor who declined analytics) is not sent — a third party gets nothing Vary would
not store itself. ``messageId`` is stable per record, so Segment deduplicates redeliveries.
Answers are classified by :func:`personalization.sinks.http.post_batch`: 2xx delivered; 408, 429,
5xx and network errors retried; any other 4xx dead-lettered.

**Erase notices are not sent.** Segment's HTTP Tracking API has only the six calls (identify, track,
page, screen, group, alias) and ``/v1/batch`` of them; nothing in it deletes or suppresses a user.
Segment deletes through *regulations* (``SUPPRESS_WITH_DELETE``, ``DELETE_ONLY`` …), issued in the
workspace (Settings → End User Privacy) or with Segment's Public API (``/regulations``, a workspace
token, not the source write key this sink holds) — and by ``userId``, while Vary sends its ids as
``anonymousId``. Sending the id in a track call would only copy it once more. So an erase record is
acknowledged without a call and logged (with the id hashed) as a warning: file the deletion
regulation in Segment for that visitor.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from personalization.privacy import hash_id
from personalization.seams import SinkRecord
from personalization.sinks.http import post_batch
from personalization.types import Exposure

__all__ = ["SegmentSink", "EVENT_NAMES", "track_call", "DEFAULT_SEGMENT_URL"]

log = logging.getLogger("vary.sinks")

DEFAULT_SEGMENT_URL = "https://api.segment.io"
#: Segment's object-action event names for Vary's records ("Order Completed" is Segment's e-commerce spec).
EVENT_NAMES: dict[str, str] = {
    "exposure": "Experience Viewed",
    "page_view": "Page Viewed",
    "click": "Element Clicked",
    "conversion": "Goal Converted",
    "task": "Task Finished",
    "abandonment": "Task Abandoned",
    "survey": "Survey Answered",
    "feedback": "Feedback Given",
    "purchase": "Order Completed",
    "identify": "Traits Identified",
}
_ENCODER = msgspec.json.Encoder()
_HIDDEN = frozenset({"visitor_id", "ts", "analytics", "event_id", "id"})


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def track_call(record: SinkRecord) -> dict[str, Any] | None:
    """One Segment track call, or ``None`` for a record with no visitor id or an erase notice (which
    the Tracking API cannot express: see the module docstring)."""
    if record.kind == "erase":
        return None
    data = msgspec.to_builtins(record.record)
    visitor_id = data.get("visitor_id")
    if not visitor_id:
        return None
    if isinstance(record.record, Exposure):
        event = EVENT_NAMES["exposure"]
        properties = {k: v for k, v in data.items() if k not in _HIDDEN}
        properties["exposure_id"] = record.record.id
    else:
        kind = data.get("type", "event")
        event = EVENT_NAMES.get(kind, kind)
        properties = {k: v for k, v in data.items() if k not in _HIDDEN and k != "type"}
        properties["vary_type"] = kind
        if kind == "purchase" and "value" in properties:
            properties["total"] = properties["value"]  # the spec's name for an order's value
    ts = data.get("ts")
    call: dict[str, Any] = {
        "type": "track",
        "event": event,
        "anonymousId": visitor_id,
        "properties": properties,
        "messageId": record.message_id,
        "context": {"library": {"name": "vary"}},
    }
    if ts is not None:
        call["timestamp"] = _iso(float(ts))
    return call


class SegmentSink:
    """Track calls in batches to ``<url>/v1/batch`` (see the module docstring)."""

    def __init__(
        self,
        write_key: str,
        url: str = DEFAULT_SEGMENT_URL,
        *,
        name: str = "segment",
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not write_key:
            raise ValueError("a Segment sink needs a write key")
        self.name = name
        self.endpoint = url.rstrip("/") + "/v1/batch"
        self._auth = httpx.BasicAuth(write_key, "")
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))

    def payload(self, batch: Sequence[SinkRecord]) -> dict[str, Any] | None:
        for record in batch:
            if record.kind == "erase":
                log.warning(
                    "sink %s: visitor %s was erased in Vary; Segment's Tracking API cannot delete: file a "
                    "deletion regulation for them in Segment (End User Privacy or the Public API)",
                    self.name, hash_id(getattr(record.record, "visitor_id", "")),
                )
        calls = [call for call in map(track_call, batch) if call is not None]
        if not calls:
            return None
        return {"batch": calls, "sentAt": _iso(datetime.now(UTC).timestamp())}

    async def deliver(self, batch: Sequence[SinkRecord]) -> None:
        payload = self.payload(batch)
        if payload is None:
            return
        await post_batch(
            self._client, self.endpoint, _ENCODER.encode(payload), auth=self._auth,
            headers={"Content-Type": "application/json", "User-Agent": "vary-segment-sink"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()
