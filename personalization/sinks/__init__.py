"""Outgoing event sinks: exposures and events delivered somewhere besides Redis, off the request path.

- :mod:`~personalization.sinks.runner` reads the exposure and event streams with one consumer group
  per sink (``vary-sink-<name>``), delivers in batches with retries and backoff, dead-letters what
  keeps failing to ``vary:sinks:dead:<name>``, and claims entries a dead runner left pending.
- :mod:`~personalization.sinks.webhook`: batched, HMAC-SHA256-signed POSTs to any URL.
- :mod:`~personalization.sinks.segment`: Segment's HTTP Tracking API (``/v1/batch`` of track calls).
- :mod:`~personalization.sinks.erasures`: erase notices every sink receives (``kind="erase"``), and
  erasing a visitor from the dead letters.

A sink is anything with a ``name`` and ``async deliver(batch)`` (:class:`personalization.seams.EventSink`).
"""

from personalization.sinks.erasures import VisitorErased
from personalization.sinks.runner import SinkRunner, SinkStats, group_name, sink_streams
from personalization.sinks.segment import SegmentSink
from personalization.sinks.webhook import WebhookSink, sign, verify_signature
from personalization.store.keys import dead_letter_stream

__all__ = [
    "SinkRunner",
    "SinkStats",
    "SegmentSink",
    "VisitorErased",
    "WebhookSink",
    "dead_letter_stream",
    "group_name",
    "sink_streams",
    "sign",
    "verify_signature",
]
