"""``GET /v1/bundle``, ``/v1/bundle/key`` and ``/v1/bundle/events`` (delivery key): local evaluation.

Routes only: the bundle is built by :mod:`personalization.decision.bundle`, cached, signed and
compressed by :mod:`api.bundles` and :mod:`api.bundle_signing`. docs/decisions.md ("Local evaluation")
describes the bundle and how SDKs decide from it.

* ``GET /v1/bundle?locale=…&fields=true``: the current bundle. ``ETag`` = version + locale + fields,
  ``If-None-Match`` → 304; brotli or gzip by ``Accept-Encoding``; ``X-Vary-Signature:
  ed25519=<base64>`` over the exact body bytes before compression; ``X-Vary-Bundle-Version``.
* ``GET /v1/bundle/key``: the Ed25519 public key SDKs verify with.
* ``GET /v1/bundle/events``: Server-Sent Events; one ``bundle`` event with the current version on
  connect, then one whenever the version changes (content, a model, a pause, an experience start).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.params import QueryParameter
from litestar.response import Response, ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from msgspec import Meta, Struct

from api.bundle_signing import SIGNATURE_HEADER
from api.bundles import BundleService, ServedBundle
from api.http.auth import requires_delivery
from api.http.common import runtime_of
from api.http.handlers import get

__all__ = ["BUNDLE_HANDLERS", "bundle", "bundle_events", "bundle_key"]

#: How often an event stream looks for a new version, and sends a keep-alive comment at the latest.
EVENTS_POLL_S = 1.0
EVENTS_KEEPALIVE_S = 15.0


class BundleKey(Struct, frozen=True, kw_only=True):
    """The key SDKs verify ``X-Vary-Signature`` with."""

    algorithm: Annotated[
        Literal["ed25519"], Meta(description="The signature algorithm of `X-Vary-Signature`: always `ed25519`.")
    ] = "ed25519"
    public_key: Annotated[
        str,
        Meta(description="Base64 of the raw 32-byte Ed25519 public key that signs every bundle: pin it in SDKs."),
    ]
    encrypted: Annotated[
        bool,
        Meta(
            description="Whether bundles are served encrypted (`VARY_BUNDLE_ENCRYPTION_KEY` is set): SDKs then "
            "need that key too."
        ),
    ]


class BundleVersion(Struct, frozen=True, kw_only=True):
    """The data of a ``bundle`` event."""

    version: str
    content_version: str
    model_version: str | None
    policy_versions: dict[str, str]


def _service(state: State) -> BundleService:
    return state.bundles  # type: ignore[no-any-return]


def _encoding(accept: str | None) -> str | None:
    """``br``, ``gzip`` or ``None`` (identity) from an ``Accept-Encoding`` value (q=0 refuses)."""
    offered: set[str] = set()
    for part in (accept or "").split(","):
        name, _, params = part.strip().partition(";")
        q = params.strip().removeprefix("q=") if params.strip().startswith("q=") else "1"
        try:
            accepted = float(q) > 0
        except ValueError:
            accepted = False
        if accepted:
            offered.add(name.strip().lower())
    if "br" in offered:
        return "br"
    if "gzip" in offered or "*" in offered:
        return "gzip"
    return None


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _response(served: ServedBundle, request: Request) -> Response[Any]:
    headers = {
        "ETag": served.etag,
        "Vary": "Accept-Encoding",
        "Cache-Control": "no-cache",  # caches may keep it, and revalidate with If-None-Match
        SIGNATURE_HEADER: served.signature,
        "X-Vary-Bundle-Version": served.version,
        "Content-Language": served.locale,
    }
    if _matches(request.headers.get("if-none-match"), served.etag):
        return Response(b"", status_code=304, headers=headers, media_type="application/json")
    encoding = _encoding(request.headers.get("accept-encoding"))
    body = served.body
    if encoding == "br":
        body, headers["Content-Encoding"] = served.brotli, "br"
    elif encoding == "gzip":
        body, headers["Content-Encoding"] = served.gzip, "gzip"
    return Response(body, status_code=200, headers=headers, media_type="application/json")


@get(
    "/v1/bundle",
    guards=[requires_delivery],
    tags=["delivery"],
    operation_id="getBundle",
    summary="The decision bundle for local evaluation (signed)",
)
async def bundle(
    state: State,
    request: Request,
    locale: Annotated[str | None, QueryParameter(max_length=35)] = None,
    fields: Annotated[bool, QueryParameter()] = False,
) -> Response[dict[str, Any]]:
    """Everything an SDK needs to make Vary's decisions locally (docs/decisions.md, "Local
    evaluation"); ``fields=true`` adds every baseline's and variant's fields in ``locale``."""
    served = _service(state).served(runtime_of(state), locale, fields, time.time())
    return _response(served, request)


@get(
    "/v1/bundle/key",
    guards=[requires_delivery],
    tags=["delivery"],
    operation_id="getBundleKey",
    summary="The public key that signs the decision bundle",
)
async def bundle_key(state: State) -> BundleKey:
    """Pin this in SDKs' configuration: a bundle from any cache is then checked against it."""
    signer = _service(state).signer
    return BundleKey(public_key=signer.public_key_b64, encrypted=signer.encrypts)


async def _versions(service: BundleService, state: State) -> AsyncIterator[ServerSentEventMessage]:
    runtime = runtime_of(state)
    last: str | None = None
    quiet = 0.0
    while True:
        bundle_now = service.state(runtime, time.time()).bundle
        if bundle_now.version != last:
            last = bundle_now.version
            quiet = 0.0
            data = BundleVersion(
                version=bundle_now.version,
                content_version=bundle_now.content_version,
                model_version=bundle_now.model_version,
                policy_versions=bundle_now.policy_versions,
            )
            yield ServerSentEventMessage(data=msgspec.json.encode(data).decode(), event="bundle", id=last)
        elif quiet >= EVENTS_KEEPALIVE_S:
            quiet = 0.0
            yield ServerSentEventMessage(comment="keep-alive")
        await asyncio.sleep(EVENTS_POLL_S)
        quiet += EVENTS_POLL_S


@get(
    "/v1/bundle/events",
    guards=[requires_delivery],
    tags=["delivery"],
    operation_id="bundleEvents",
    summary="Server-Sent Events announcing each new bundle version",
    # An endless text/event-stream: not an operation a JSON schema (or a fuzzer reading whole
    # responses) can describe; docs/decisions.md ("Local evaluation") documents it.
    include_in_schema=False,
)
async def bundle_events(state: State) -> ServerSentEvent:
    """A ``bundle`` event (data: version, content and model versions) on connect and on every change."""
    service = _service(state)
    service.state(runtime_of(state), time.time())  # 503 now rather than a broken stream
    return ServerSentEvent(_versions(service, state))


BUNDLE_HANDLERS = (bundle, bundle_key, bundle_events)
