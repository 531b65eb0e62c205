"""Why content could not be loaded.

A failed load never takes the service down: the caller keeps serving the last good snapshot and
reports the error. So every failure of a :class:`~content.sources.ContentSource` is one of these,
with a message an operator can act on, and the SDK's own exception (if any) chained as ``__cause__``.

Error trees::

    ContentSourceError          content could not be loaded (network, server error, rate limit, …)
     ├── ContentAccessError     the space refused the credentials (HTTP 401/403), or it does not exist
     └── ContentFormatError     the data does not look like Contentful's (bad export file, bad JSON)

    ValueError
     ├── WebhookSignatureError  a webhook call is not provably from Contentful, or is too old (→ 401)
     └── WebhookPayloadError    signed, but not a webhook Vary can read: topic or body (→ 400)

The webhook errors are raised by :mod:`content.webhooks` and
:meth:`content.coordinator.ContentCoordinator.apply_webhook` before anything changes.
"""

from __future__ import annotations

__all__ = [
    "ContentSourceError",
    "ContentAccessError",
    "ContentFormatError",
    "WebhookSignatureError",
    "WebhookPayloadError",
]


class ContentSourceError(Exception):
    """Content could not be loaded. ``status`` is the HTTP status when Contentful answered at all."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ContentAccessError(ContentSourceError):
    """The space refused the access token (HTTP 401/403) or the space/environment was not found (404).

    Retrying does not help; the configuration has to change.
    """


class ContentFormatError(ContentSourceError):
    """The input is not in Contentful's format: an export file with the wrong shape, or broken JSON."""


class WebhookSignatureError(ValueError):
    """The request is unsigned, badly signed, or outside the time-to-live. The message says which."""


class WebhookPayloadError(ValueError):
    """The topic header or the body is not a Contentful webhook we can read."""
