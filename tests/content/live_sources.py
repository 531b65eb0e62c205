"""The two live sources pointed at a :class:`~tests.content.contentful_server.FakeContentful`.

Every test of a live source makes them the same way (plain HTTP to the fake, its tokens unless a
test passes another), so they are made here once.
"""

from __future__ import annotations

from typing import Any

from content.preview import PreviewSource
from content.sources import ContentfulSource
from tests.content.contentful_server import FakeContentful

__all__ = ["delivery_source", "preview_source"]


def delivery_source(server: FakeContentful, **options: Any) -> ContentfulSource:
    """A :class:`ContentfulSource` (Sync API) on the fake; ``options`` as the constructor takes them."""
    options.setdefault("access_token", server.access_token)
    return ContentfulSource(server.space_id, api_url=server.api_url, https=False, **options)


def preview_source(server: FakeContentful, **options: Any) -> PreviewSource:
    """A :class:`PreviewSource` (Content Preview API) on the fake; ``options`` as the constructor takes them."""
    options.setdefault("preview_token", server.preview_token)
    return PreviewSource(server.space_id, api_url=server.api_url, https=False, **options)
