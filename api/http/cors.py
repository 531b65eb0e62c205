"""CORS for the delivery routes only.

Browsers call ``/v1/personalize``, ``/v1/entries/*`` and ``/v1/events`` with a delivery key, so those
routes answer preflights and add ``Access-Control-Allow-Origin`` for the origins in
``VARY_CORS_ORIGINS`` (comma-separated; ``*`` allows any). Every other route — admin, models,
visitors, webhooks — never sends a CORS header, so a browser page cannot call it cross-origin.
Litestar's ``CORSConfig`` is app-wide, hence this small ASGI middleware that looks at the path.

A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) from an allowed origin
is answered here with 204; anything else passes through unchanged. Credentials (cookies) are not
allowed: the key travels in the ``Authorization`` header, which the preflight allows explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable

from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DeliveryCORSMiddleware", "DELIVERY_PATHS", "is_delivery_path"]

#: Exact paths and path prefixes of the delivery routes.
#: ``/v1/exposures`` and the SDK files belong to the front-end kit (``api/frontend``): a page on another
#: origin imports ``/v1/sdk.mjs`` (module scripts are fetched with CORS) and posts exposures.
DELIVERY_PATHS = ("/v1/personalize", "/v1/events", "/v1/exposures", "/v1/sdk.js", "/v1/sdk.mjs",
                  "/v1/sdk-local.mjs",  # the kit's local mode imports it (api/frontend/assets.py)
                  # local evaluation (api/http/bundle.py): a page decides from the bundle itself
                  "/v1/bundle", "/v1/bundle/key", "/v1/bundle/events")
DELIVERY_PREFIXES = ("/v1/entries/",)
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "authorization, content-type, if-none-match"
#: The bundle's signature, version and ETag must be readable by a page on another origin.
EXPOSE_HEADERS = "retry-after, etag, x-vary-signature, x-vary-bundle-version"
MAX_AGE_S = 600


def is_delivery_path(path: str) -> bool:
    path = path.rstrip("/") or "/"
    return path in DELIVERY_PATHS or any(path.startswith(p) and len(path) > len(p) for p in DELIVERY_PREFIXES)


class DeliveryCORSMiddleware:
    """ASGI middleware: CORS headers on the delivery routes for the configured origins."""

    def __init__(self, app: ASGIApp, origins: Iterable[str] = ()) -> None:
        self.app = app
        self.origins = frozenset(o.rstrip("/") for o in origins)
        self.any_origin = "*" in self.origins

    def _allowed(self, origin: str | None) -> str | None:
        """The value for ``Access-Control-Allow-Origin``, or ``None`` when the origin is not allowed."""
        if not origin:
            return None
        if self.any_origin:
            return "*"
        return origin if origin in self.origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.origins or not is_delivery_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        allow = self._allowed(headers.get("origin"))
        if allow is None:
            await self.app(scope, receive, send)
            return
        vary = [(b"vary", b"Origin")] if allow != "*" else []
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        (b"access-control-allow-origin", allow.encode("latin-1")),
                        (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                        (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                        (b"access-control-max-age", str(MAX_AGE_S).encode()),
                        *vary,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", allow.encode("latin-1")),
                    (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
                    *vary,
                ]
            await send(message)

        await self.app(scope, receive, send_with_cors)
