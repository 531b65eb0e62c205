"""``POST /v1/webhooks/contentful``: Contentful tells Vary that content changed."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State

from api.http.common import runtime_of
from api.http.handlers import post
from api.http.schemas import WebhookAccepted
from personalization.errors import NotAuthenticated

__all__ = ["contentful_webhook"]


@post("/v1/webhooks/contentful", status_code=200, tags=["contentful"], summary="Contentful webhook")
async def contentful_webhook(request: Request, state: State) -> WebhookAccepted:
    """Verify Contentful's request signature, then sync at once and tell every other worker.

    Unsigned, badly signed or expired requests, requests whose topic header is not signed, and exact
    replays of a request already accepted get 401 and change nothing.
    """
    runtime = runtime_of(state)
    secret = runtime.settings.contentful_webhook_secret
    if not secret:
        raise NotAuthenticated("webhooks are off: set VARY_CONTENTFUL_WEBHOOK_SECRET")
    body = await request.body()
    path = request.scope["raw_path"].decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    # A bad signature or payload raises content's errors, which api.http.errors maps to 401/400.
    outcome = await runtime.content.apply_webhook(
        secret, request.method, path + (f"?{query}" if query else ""), dict(request.headers), body,
        on_change=runtime.preview.invalidate if runtime.preview is not None else None,
    )
    return WebhookAccepted(
        topic=outcome.topic, entity_id=outcome.entity_id, synced=outcome.synced,
        content_version=outcome.content_version,
    )
