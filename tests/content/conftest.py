"""Fixtures for content tests: the demo export as data, and a fake Contentful serving it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from content import demo_space_path
from tests.content.contentful_server import FakeContentful


@pytest.fixture
def demo_export() -> dict[str, Any]:
    """The bundled demo space (export format), freshly parsed: safe to modify in a test."""
    return json.loads(demo_space_path().read_text(encoding="utf-8"))


@pytest.fixture
def contentful_server(demo_export: dict[str, Any]) -> Iterator[FakeContentful]:
    """A fake CDA serving the demo space, with sync pages of 3 items so paging is exercised."""
    with FakeContentful(demo_export, sync_page_size=3) as server:
        yield server
