"""Fixtures for end-to-end tests: the real browser (see ``browser.py``), and the Redis of a module's
server (each module defines its own ``server`` fixture: a real ``vary serve`` process)."""

from collections.abc import Iterator

import pytest
import redis

from tests.e2e.browser import browser, page  # noqa: F401  (pytest fixtures)
from tests.e2e.servers import VaryProcess


@pytest.fixture(scope="module")
def store(server: VaryProcess) -> Iterator[redis.Redis]:
    """A client of the Redis the module's server writes to (decoded strings)."""
    assert server.redis_url, server.output()
    client = redis.Redis.from_url(server.redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()
