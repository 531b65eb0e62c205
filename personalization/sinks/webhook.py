"""The webhook sink: exposures and events as batched, signed JSON POSTs to any URL.

Body (``application/json``)::

    {"sink": "webhook", "records": [{"kind": "exposure", "stream": "vary:exposures",
      "entry_id": "1718000000000-0", "message_id": "vary-exposure-…", "data": {…the Exposure…}}, …]}

An erased visitor arrives as ``{"kind": "erase", …, "data": {"visitor_id": "…", "ts": …}}``
(:mod:`personalization.sinks.erasures`): the receiver should delete what it holds of that visitor;
it is delivered, retried and dead-lettered like every other record.

Headers: ``X-Vary-Timestamp`` (Unix seconds) and ``X-Vary-Signature: sha256=<hex>``, the
HMAC-SHA256 with the shared secret over ``"<timestamp>." + body`` — the timestamp is signed too, so
a receiver that rejects old timestamps (:func:`verify_signature`, 5 minutes by default) is safe from
replays. A 2xx answer is a delivery; 408, 425, 429, 5xx and network errors are retried by the
runner (:class:`~personalization.seams.SinkError`); any other 4xx is a
:class:`~personalization.seams.PermanentSinkError` (a retry would get the same answer) and is
dead-lettered at once (:func:`personalization.sinks.http.post_batch` posts and classifies).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

import httpx
import msgspec

from personalization.seams import SinkRecord
from personalization.sinks.http import RETRYABLE_STATUSES, post_batch

__all__ = ["WebhookSink", "sign", "verify_signature", "SIGNATURE_HEADER", "TIMESTAMP_HEADER"]

SIGNATURE_HEADER = "X-Vary-Signature"
TIMESTAMP_HEADER = "X-Vary-Timestamp"
_ENCODER = msgspec.json.Encoder()
#: Also retried: 425 Too Early (a receiver not yet ready to take the batch).
_RETRYABLE = RETRYABLE_STATUSES | {425}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``"<timestamp>." + body`` with ``secret``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """What a receiver checks: the signature matches (constant time) and the timestamp is recent."""
    if not timestamp or not signature:
        return False
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSink:
    """POSTs each batch the runner hands it (see the module docstring)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        name: str = "webhook",
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("a webhook sink needs a secret to sign its requests")
        self.name = name
        self.url = url
        self._secret = secret
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))
        self._clock = clock

    def body(self, batch: Sequence[SinkRecord]) -> bytes:
        return _ENCODER.encode({
            "sink": self.name,
            "records": [
                {"kind": r.kind, "stream": r.stream, "entry_id": r.entry_id, "message_id": r.message_id,
                 "data": r.record}
                for r in batch
            ],
        })

    async def deliver(self, batch: Sequence[SinkRecord]) -> None:
        body = self.body(batch)
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            "User-Agent": "vary-webhook-sink",
        }
        await post_batch(self._client, self.url, body, headers=headers, retryable=_RETRYABLE)

    async def aclose(self) -> None:
        await self._client.aclose()
