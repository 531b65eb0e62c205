"""New bundle versions pushed to a webhook (an edge KV updater), announced once per change cluster-wide.

``GET /v1/bundle/events`` tells connected SDKs of a new version; an edge KV has no connection, so a
webhook tells it instead. Every worker sees a change (content, a model, a guardrail pause) on its
own, so the announcement is deduplicated in Redis: the worker that detects a change runs
``SET vary:bundle:announced <version> GET`` — atomic, so of N workers detecting the same change
exactly one gets the old version back and appends a :class:`BundleVersionNotice` to the stream
``vary:sinks:bundle_versions``. (Deduplicating by *transition*, not by version: a pause then a resume
returns to an earlier version, which must be announced again.) A worker that starts announces its
version only if none was ever announced (``SET NX``), so a restart or a new replica is silent.

Delivery reuses the sink runner (:class:`~personalization.sinks.runner.SinkRunner`): one consumer
group ``vary-sink-bundle-webhook`` shared by every worker, so each notice is POSTed once, retried with
backoff, claimed from a dead worker, dead-lettered to ``vary:sinks:dead:bundle-webhook``. The body is
the notice alone (``{"type": "bundle.version", "version", "content_version", "url"}``), signed like
the webhook sink (``X-Vary-Timestamp``, ``X-Vary-Signature: sha256=…``,
:func:`~personalization.sinks.webhook.sign`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import msgspec
from redis.asyncio import Redis

from personalization.seams import SinkRecord
from personalization.sinks.http import RETRYABLE_STATUSES, post_batch
from personalization.sinks.runner import SinkRunner
from personalization.sinks.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

__all__ = [
    "ANNOUNCED_KEY",
    "BUNDLE_VERSIONS",
    "BundleVersionNotice",
    "BundleVersionRunner",
    "BundleWebhookSink",
    "announce_bundle_version",
]

#: The stream of notices and the last announced version.
BUNDLE_VERSIONS = "vary:sinks:bundle_versions"
ANNOUNCED_KEY = "vary:bundle:announced"
#: Notices kept in the stream (approximately): a receiver only needs the latest.
MAX_NOTICES = 1_000
SINK_NAME = "bundle-webhook"


class BundleVersionNotice(msgspec.Struct, frozen=True, kw_only=True):
    """Bundle ``version`` (of content ``content_version``) is now served at ``url``."""

    type: str = "bundle.version"
    version: str
    content_version: str
    url: str = "/v1/bundle"


_DECODER = msgspec.json.Decoder(BundleVersionNotice)
_ENCODER = msgspec.json.Encoder()


async def announce_bundle_version(
    redis: Redis, notice: BundleVersionNotice, *, changed: bool
) -> bool:
    """Append ``notice`` unless another worker already announced this change; True when appended.

    ``changed``: this worker saw its version change (announce if the cluster's last announced
    version differs); otherwise it just started (announce only if nothing was ever announced)."""
    if changed:
        previous = await redis.set(ANNOUNCED_KEY, notice.version, get=True)
        if previous is not None and (previous.decode() if isinstance(previous, bytes) else previous) == notice.version:
            return False
    elif not await redis.set(ANNOUNCED_KEY, notice.version, nx=True):
        return False
    await redis.xadd(BUNDLE_VERSIONS, {"data": _ENCODER.encode(notice)}, maxlen=MAX_NOTICES, approximate=True)
    return True


class BundleWebhookSink:
    """POSTs each notice, alone and signed, to the configured URL."""

    name = SINK_NAME
    kinds: tuple[str, ...] = ()

    def __init__(
        self, url: str, secret: str, *, timeout_s: float = 10.0, client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("the bundle webhook needs a secret to sign its requests")
        self.url = url
        self._secret = secret
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))
        self._clock = clock

    async def deliver(self, batch: Sequence[SinkRecord]) -> None:
        for record in batch:
            body = _ENCODER.encode(record.record)
            timestamp = str(int(self._clock()))
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
                "User-Agent": "vary-bundle-webhook",
            }
            await post_batch(self._client, self.url, body, headers=headers, retryable=RETRYABLE_STATUSES | {425})

    async def aclose(self) -> None:
        await self._client.aclose()


class BundleVersionRunner(SinkRunner):
    """The sink runner on the notices stream only (one notice per delivery)."""

    def __init__(self, redis: Redis, sink: BundleWebhookSink, *, consumer: str, **options: Any) -> None:
        # From the stream's start: a notice appended before the group existed is still delivered.
        super().__init__(redis, sink, consumer=consumer, batch_size=1, start_id="0", **options)
        self.streams = [(BUNDLE_VERSIONS, "bundle_version")]  # type: ignore[list-item]

    def _decode(self, stream: str, kind: Any, entry_id: str, fields: dict[Any, Any]) -> SinkRecord:
        data = fields.get(b"data", fields.get("data"))
        if data is None:
            raise ValueError("no data field")
        return SinkRecord(kind=kind, stream=stream, entry_id=entry_id, record=_DECODER.decode(data))  # type: ignore[arg-type]
