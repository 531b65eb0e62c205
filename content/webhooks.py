"""Contentful webhooks: verify the request signature, then read what changed.

Pure functions over (method, path, headers, body): the HTTP route does the I/O and maps the errors
(signature → 401, payload → 400). Contentful's *request verification* signs each webhook call with
HMAC-SHA256 over a canonical string (``reference/contentful.md``; the same algorithm as
``verifyRequest``/``signRequest`` in ``@contentful/node-apps-toolkit``)::

    METHOD \\n path[?query] \\n k1:v1;k2:v2;… (signed headers, lower-cased names, sorted) \\n raw body

and sends ``x-contentful-signature`` (64 hex digits), ``x-contentful-signed-headers`` (comma list,
always including itself and the timestamp) and ``x-contentful-timestamp`` (Unix milliseconds). The
timestamp is signed, so a captured request can be replayed only inside the time-to-live.

Contentful lets the sender choose which headers to sign. Vary acts on ``x-contentful-topic`` (publish
resyncs, a draft save does nothing), so a request whose signed headers do not include the topic is
refused (``verify_request(..., require_signed=[TOPIC_HEADER])``): otherwise a captured draft-save call
could be replayed within the TTL as a ``publish`` (or the other way round) with its signature still
valid. (An exact replay of a signed request inside the
TTL is refused by the caller, which remembers each accepted signature in Redis for the TTL:
:meth:`content.coordinator.ContentCoordinator.apply_webhook`.)

Two deliberate differences from the Node helper: a timestamp more than ``ttl`` *ahead* of our clock is
refused too (a request signed in the future would otherwise stay replayable for longer than the TTL),
and the path is signed as it arrived, as ``reference/contentful.md`` says (the helper also
percent-escapes the query and URI-encodes the result; for a plain ASCII path without a query, such
as ``/v1/webhooks/contentful``, the two are the same, so configure the webhook URL that way).

Errors (declared in :mod:`content.errors`, raised here)::

    ValueError
     ├── WebhookSignatureError   the request is not provably from Contentful, or is too old: answer 401
     └── WebhookPayloadError     signed, but not a webhook we can read (topic or body): answer 400

An empty secret is a configuration error and raises a plain ``ValueError``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from content.errors import WebhookPayloadError, WebhookSignatureError

__all__ = [
    "ACCEPTED_TOPICS",
    "SIGNATURE_HEADER",
    "SIGNED_HEADERS_HEADER",
    "TIMESTAMP_HEADER",
    "TOPIC_HEADER",
    "WebhookEvent",
    "WebhookPayloadError",
    "WebhookSignatureError",
    "canonical_request",
    "is_content_change",
    "parse_webhook",
    "sign_request",
    "verify_request",
]

SIGNATURE_HEADER = "x-contentful-signature"
SIGNED_HEADERS_HEADER = "x-contentful-signed-headers"
TIMESTAMP_HEADER = "x-contentful-timestamp"
TOPIC_HEADER = "x-contentful-topic"

_TOPIC_PREFIX = "ContentManagement"
_HEX_DIGITS = frozenset("0123456789abcdef")

#: Topics that change what the Delivery API serves, so Vary resyncs at once. Entries and assets on
#: publish/unpublish/delete/archive; content types on publish/unpublish/delete too, because a
#: published content type change (a new field, a new validation) changes how entries compile.
#: ``save``/``auto_save``/``create`` only touch drafts, which delivery never shows: they parse fine
#: and :func:`is_content_change` says no. The route should still answer 2xx for them, or Contentful
#: retries them.
ACCEPTED_TOPICS: frozenset[str] = frozenset(
    [f"{_TOPIC_PREFIX}.{entity}.{action}"
     for entity in ("Entry", "Asset")
     for action in ("publish", "unpublish", "delete", "archive")]
    + [f"{_TOPIC_PREFIX}.ContentType.{action}" for action in ("publish", "unpublish", "delete")]
)


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What one webhook call says happened.

    ``entity`` and ``action`` are the topic's last two parts (``Entry``/``publish``). ``content_type`` is
    the entry's content type id when the body carries it (entries and their ``DeletedEntry``
    tombstones do), the content type's own id for ``ContentType`` topics, else ``None``.
    ``space_id``/``environment_id`` come from the body's ``sys`` links, when present.
    """

    topic: str
    entity: str
    action: str
    entity_id: str | None
    content_type: str | None
    space_id: str | None = None
    environment_id: str | None = None


def _normalize_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased, trimmed names; trimmed values. Why: HTTP header names are case-insensitive."""
    return {str(k).strip().lower(): str(v).strip() for k, v in headers.items()}


def _split_header_list(value: str) -> list[str]:
    return [name.strip().lower() for name in value.split(",") if name.strip()]


def _body_text(body: bytes) -> str:
    # surrogateescape keeps non-UTF-8 bytes round-trippable, so the HMAC is over the exact raw body.
    return body.decode("utf-8", errors="surrogateescape")


def canonical_request(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    signed_headers: Sequence[str],
) -> str:
    """The string Contentful signs: method, path (with ``?query`` if any), signed headers, raw body.

    Only the headers named in ``signed_headers`` take part, as ``name:value`` with names lower-cased
    and trimmed, values trimmed, sorted by name and joined with ``;``. A signed header missing from
    ``headers`` raises :class:`WebhookSignatureError`: the signature cannot be checked without it.
    """
    normalized = _normalize_headers(headers)
    names = sorted({name.strip().lower() for name in signed_headers if name.strip()})
    missing = [name for name in names if name not in normalized]
    if missing:
        raise WebhookSignatureError(f"signed header {missing[0]} is missing from the request")
    header_part = ";".join(f"{name}:{normalized[name]}" for name in names)
    return "\n".join([method.upper(), path, header_part, _body_text(body)])


def _hmac_hex(secret: str, canonical: str) -> str:
    if not secret:
        raise ValueError("the webhook signing secret is empty")
    message = canonical.encode("utf-8", errors="surrogateescape")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_request(
    secret: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    timestamp_ms: int,
    signed_headers: Sequence[str] | None = None,
) -> dict[str, str]:
    """The three ``x-contentful-*`` headers Contentful would add to this request; merge them into it.

    For tests and a developer's tooling (replaying a webhook at a local Vary). By default every given
    header is signed (except a stale signature), plus the timestamp and the signed-headers list.
    """
    normalized = _normalize_headers(headers)
    normalized.pop(SIGNATURE_HEADER, None)
    chosen = normalized.keys() if signed_headers is None else signed_headers
    names = sorted(
        {name.strip().lower() for name in chosen if name.strip()} | {TIMESTAMP_HEADER, SIGNED_HEADERS_HEADER}
    )
    if SIGNATURE_HEADER in names:
        raise ValueError(f"{SIGNATURE_HEADER} cannot sign itself")
    added = {TIMESTAMP_HEADER: str(int(timestamp_ms)), SIGNED_HEADERS_HEADER: ",".join(names)}
    canonical = canonical_request(method, path, {**normalized, **added}, body, names)
    return {SIGNATURE_HEADER: _hmac_hex(secret, canonical), **added}


def verify_request(
    secret: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    now_ms: int,
    ttl_s: int = 30,
    *,
    require_signed: Sequence[str] = (),
) -> None:
    """Return if Contentful signed exactly this request within ``ttl_s``; else raise why not.

    ``require_signed``: headers the caller acts on, which must be among the signed ones (Vary's
    route passes :data:`TOPIC_HEADER`); the timestamp and the signed-headers list always are.

    ``path`` is the request target as received, with ``?query`` if there is one. ``now_ms`` is the
    caller's clock (Unix ms), passed in so this stays pure. A request is too old when
    ``now - timestamp >= ttl`` (Contentful's helper rule) and refused as well when its timestamp is
    more than ``ttl`` ahead. ``ttl_s=0`` turns the age check off, as in the Node helper.
    """
    if ttl_s < 0:
        raise ValueError("ttl_s must be >= 0")
    normalized = _normalize_headers(headers)
    for name in (SIGNATURE_HEADER, SIGNED_HEADERS_HEADER, TIMESTAMP_HEADER):
        if not normalized.get(name):
            raise WebhookSignatureError(f"missing {name} header")
    signature = normalized[SIGNATURE_HEADER].lower()
    if len(signature) != 64 or not set(signature) <= _HEX_DIGITS:
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} is not 64 hex digits")
    try:
        timestamp = int(normalized[TIMESTAMP_HEADER])
    except ValueError:
        raise WebhookSignatureError(f"{TIMESTAMP_HEADER} is not a Unix time in milliseconds") from None
    signed = _split_header_list(normalized[SIGNED_HEADERS_HEADER])
    for required in (TIMESTAMP_HEADER, SIGNED_HEADERS_HEADER, *(n.strip().lower() for n in require_signed)):
        if required not in signed:
            raise WebhookSignatureError(f"signed headers must include {required}")
    if SIGNATURE_HEADER in signed:
        raise WebhookSignatureError(f"signed headers must not include {SIGNATURE_HEADER}")
    if ttl_s:
        age_ms = now_ms - timestamp
        if age_ms >= ttl_s * 1000:
            raise WebhookSignatureError(f"request is {age_ms // 1000} s old; the limit is {ttl_s} s")
        if -age_ms > ttl_s * 1000:
            raise WebhookSignatureError(
                f"request is signed {-age_ms // 1000} s in the future; the limit is {ttl_s} s"
            )
    expected = _hmac_hex(secret, canonical_request(method, path, normalized, body, signed))
    if not hmac.compare_digest(expected, signature):
        raise WebhookSignatureError("signature does not match")


_BODY = msgspec.json.Decoder(dict[str, Any])


def _link_id(value: Any) -> str | None:
    """The id of a ``{"sys": {"id": …}}`` link, tolerating anything else as "absent"."""
    if isinstance(value, dict):
        sys = value.get("sys")
        if isinstance(sys, dict) and isinstance(sys.get("id"), str):
            return sys["id"]
    return None


def parse_webhook(topic_header: str | None, body: bytes) -> WebhookEvent:
    """Read the ``X-Contentful-Topic`` header and the body's ``sys``.

    Publish sends the entity in management format; unpublish and delete send a tombstone
    (``DeletedEntry``/``DeletedAsset``) with the same ``sys.id`` and, for entries, ``contentType``.
    Any well-formed ``ContentManagement.<Entity>.<action>`` topic parses; :func:`is_content_change`
    decides whether it matters.
    """
    topic = (topic_header or "").strip()
    if not topic:
        raise WebhookPayloadError("missing X-Contentful-Topic header")
    parts = topic.split(".")
    if len(parts) != 3 or parts[0] != _TOPIC_PREFIX or not all(part.strip() for part in parts):
        raise WebhookPayloadError(
            f"malformed X-Contentful-Topic {topic!r}: expected ContentManagement.<Entity>.<action>"
        )
    try:
        payload = _BODY.decode(body)
    except msgspec.DecodeError as exc:
        raise WebhookPayloadError(f"webhook body is not a JSON object: {exc}") from None
    sys = payload.get("sys")
    if not isinstance(sys, dict) or not isinstance(sys.get("id"), str) or not sys["id"]:
        raise WebhookPayloadError("webhook body has no sys.id")
    _, entity, action = parts
    content_type = sys["id"] if entity == "ContentType" else _link_id(sys.get("contentType"))
    return WebhookEvent(
        topic=topic,
        entity=entity,
        action=action,
        entity_id=sys["id"],
        content_type=content_type,
        space_id=_link_id(sys.get("space")),
        environment_id=_link_id(sys.get("environment")),
    )


def is_content_change(event: WebhookEvent) -> bool:
    """Whether the event changes published content, so Vary should resync now (see ACCEPTED_TOPICS)."""
    return event.topic in ACCEPTED_TOPICS
