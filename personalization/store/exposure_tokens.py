"""Exposure tokens: an exposure decided now, signed, and recorded only when the visitor sees it.

Why: ``POST /v1/personalize`` logs one exposure per entry at decision time, but a page often asks for
entries the visitor never scrolls to. Counting those dilutes every experiment (a variant "shown" to
people who never saw it). With ``"exposures": "on_view"`` the decision is made the same way, nothing is
queued, and each entry carries a token: the exposure record itself, signed with HMAC-SHA256. The front
end sends the token back (``POST /v1/exposures``) when the component is actually in view; the server
verifies it and queues the exposure it holds. Because the record travels signed, the server keeps no
per-decision state, and every worker that shares the secret can accept a token any other worker issued.

Format (URL-safe, no padding)::

    base64url(msgpack([version, expires_at, exposure])) "." base64url(HMAC-SHA256(secret, first part))

The signature is checked (in constant time) *before* the payload is decoded, so untrusted bytes are
never parsed. The payload is signed, not encrypted: it holds what the decision already told the client
(variant, experience, segment scores), and the visitor id only when the visitor consented to analytics
(the exposure is built that way by :func:`personalization.decision.decide.decide`).

Errors::

    ExposureTokenError (ValueError)   .reason is one of REASONS
      "malformed"        not two base64url parts, or a payload that does not decode
      "bad signature"    signed with another secret, or altered
      "expired"          older than its ``expires_at``
      "unsupported version"

Pure logic: no clock (``now`` is an argument), no Redis, no HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Literal

import msgspec

from personalization.types import Exposure

__all__ = [
    "DEFAULT_TTL_S",
    "MAX_TOKEN_CHARS",
    "REASONS",
    "ExposureTokenError",
    "ExposureTokens",
    "secret_from_key_digests",
]

#: How long a token stays valid: a page left open in a tab and scrolled the next morning still counts.
DEFAULT_TTL_S = 86_400
#: Longer than any real token (an exposure with a few dozen segment scores is well under 2,000).
MAX_TOKEN_CHARS = 4096
VERSION = 1
REASONS = ("malformed", "bad signature", "expired", "unsupported version")
Reason = Literal["malformed", "bad signature", "expired", "unsupported version"]


class ExposureTokenError(ValueError):
    """A token that cannot be accepted; :attr:`reason` says why in a word or two (see :data:`REASONS`)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason


class _Claims(msgspec.Struct, frozen=True, array_like=True):
    version: int
    expires_at: int
    exposure: Exposure


_PART = re.compile(r"[A-Za-z0-9_-]+")
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Claims)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def secret_from_key_digests(delivery: Iterable[bytes], admin: Iterable[bytes]) -> bytes:
    """A signing secret every worker derives alike from the API keys' SHA-256 digests.

    Used when no explicit secret is configured. The admin digests are the HMAC key, so the secret is
    as hard to guess as the admin key itself (a delivery key is public: it lives in web pages). Keys
    are sorted, so their order in the configuration does not matter; rotating a key changes the secret,
    and tokens issued before the rotation are then refused as ``bad signature``.
    """
    admin_part = b"".join(sorted(admin))
    delivery_part = b"".join(sorted(delivery))
    return hmac.new(admin_part, b"vary exposure tokens v1|" + delivery_part, hashlib.sha256).digest()


class ExposureTokens:
    """Signs and verifies exposure tokens with one secret shared by all workers."""

    def __init__(self, secret: bytes, ttl_s: int = DEFAULT_TTL_S) -> None:
        if len(secret) < 16:
            raise ValueError("an exposure token secret needs at least 16 bytes")
        self._secret = secret
        self.ttl_s = ttl_s

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def sign(self, exposure: Exposure, now: float) -> str:
        """The token for ``exposure``, valid for :attr:`ttl_s` seconds from ``now``."""
        payload = _b64(_ENCODER.encode(_Claims(VERSION, int(now) + self.ttl_s, exposure))).encode("ascii")
        return payload.decode("ascii") + "." + _b64(self._mac(payload))

    def verify(self, token: str, now: float) -> Exposure:
        """The exposure a valid token holds; :class:`ExposureTokenError` otherwise."""
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise ExposureTokenError("malformed")
        payload, dot, signature = token.partition(".")
        if not dot or not _PART.fullmatch(payload) or not _PART.fullmatch(signature):
            raise ExposureTokenError("malformed")
        try:
            presented = _unb64(signature)
        except (binascii.Error, ValueError):
            raise ExposureTokenError("malformed") from None
        if not hmac.compare_digest(presented, self._mac(payload.encode("ascii"))):
            raise ExposureTokenError("bad signature")
        try:
            claims = _DECODER.decode(_unb64(payload))
        except (binascii.Error, ValueError, msgspec.DecodeError):
            raise ExposureTokenError("malformed") from None
        if claims.version != VERSION:
            raise ExposureTokenError("unsupported version")
        if now > claims.expires_at:
            raise ExposureTokenError("expired")
        return claims.exposure
