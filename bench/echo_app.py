"""The HTTP baseline: a bare Litestar + msgspec app that does no work but the framework's.

``POST /v1/personalize`` decodes the same ~500-byte body Vary gets into a msgspec Struct of the same
shape (same bounds, unknown fields forbidden) and returns a Struct of about the size of Vary's
response (three entries with pre-encoded fields, ~2 KB). No auth, no Redis, no decision, no logging:
the ceiling any Litestar app on this server and worker count can reach. Run it with the same server
as Vary, e.g. ``uvicorn bench.echo_app:app``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Litestar, get, post
from msgspec import Meta, Struct

__all__ = ["app"]

Id = Annotated[str, Meta(min_length=1, max_length=256)]
Short = Annotated[str, Meta(max_length=256)]
Url = Annotated[str, Meta(max_length=2048)]


class Consent(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    personalization: bool = True
    analytics: bool = True


class Visitor(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: Id
    session_id: Id | None = None
    channel: Literal["web", "ios", "android", "email", "kiosk", "call_center", "store"] = "web"
    locale: Annotated[str, Meta(max_length=35)] | None = None
    device: Annotated[str, Meta(max_length=64)] | None = None
    country: Annotated[str, Meta(max_length=2, pattern="^[A-Za-z]{2}$")] | None = None
    referrer: Url | None = None
    page: Url | None = None
    utm: Annotated[dict[Annotated[str, Meta(max_length=64)], Short], Meta(max_length=16)] = {}
    traits: Annotated[dict[Annotated[str, Meta(max_length=128)], str | float | bool | None], Meta(max_length=64)] = {}
    consent: Consent = Consent()


class EchoRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    visitor: Visitor
    entries: Annotated[list[Id], Meta(min_length=1, max_length=50)]
    locale: Annotated[str, Meta(min_length=2, max_length=35)] | None = None
    preview: bool = False


class EchoEntry(Struct, frozen=True, kw_only=True):
    entry_id: str
    content_type: str | None
    experience: str | None
    variant: int
    variant_entry_id: str
    is_control: bool
    holdout: bool
    propensity: float
    reason: str
    exposure_id: str
    fields: msgspec.Raw


class EchoResponse(Struct, frozen=True, kw_only=True):
    visitor_id: str
    locale: str
    segments: dict[str, float]
    model_version: str | None
    content_version: str
    degraded: bool
    entries: list[EchoEntry]


_FIELDS = msgspec.Raw(
    msgspec.json.encode(
        {
            "title": "Everything for your home, delivered tomorrow",
            "subtitle": "Over 20,000 products for living, cooking and sleeping, chosen by people who use them.",
            "ctaLabel": "Shop now",
            "ctaUrl": "/shop",
            "text": "Free returns within 30 days. " * 3,
        }
    )
)
_REASON = "audience 'Visitors in Canada and the US' matched (country US in [CA, US]); personalization: variant 1"


@post("/v1/personalize", status_code=200)
async def echo(data: EchoRequest) -> EchoResponse:
    return EchoResponse(
        visitor_id=data.visitor.id,
        locale=data.locale or "en-US",
        segments={"price_sensitive": 0.41, "high_intent": 0.73, "loyal": 0.12},
        model_version="seg-20250601-abcdef",
        content_version="fa74cb5e541e",
        degraded=False,
        entries=[
            EchoEntry(
                entry_id=entry_id,
                content_type="banner",
                experience="bench-experience",
                variant=1,
                variant_entry_id=entry_id + "Variant",
                is_control=False,
                holdout=False,
                propensity=0.5,
                reason=_REASON,
                exposure_id="0123456789ab1f",
                fields=_FIELDS,
            )
            for entry_id in data.entries
        ],
    )


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar(route_handlers=[echo, health], debug=False, openapi_config=None)
