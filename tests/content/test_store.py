"""The last good content in Redis: a round trip on the real Valkey server, and damaged data ignored."""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import pytest
from redis.asyncio import Redis

from content import ContentItems, ExportFileSource, compile_snapshot, demo_space_path
from content.store import CONTENT_STATE_KEY, STORE_FORMAT, ContentStore, StoredContent

T = TypeVar("T")


def run(redis_url: str, body: Callable[[Redis, ContentStore], Awaitable[T]]) -> T:
    async def main() -> T:
        client = Redis.from_url(redis_url)
        try:
            return await body(client, ContentStore(client))
        finally:
            await client.aclose()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def demo_items() -> ContentItems:
    return ExportFileSource(demo_space_path()).load()


def test_round_trip(redis_url: str, demo_items: ContentItems) -> None:
    version = compile_snapshot(demo_items).version

    async def body(client: Redis, store: ContentStore) -> tuple[StoredContent | None, str | None, int]:
        assert await store.load() is None and await store.version() is None
        await store.save(demo_items, "token-1", version)
        return await store.load(), await store.version(), await client.hstrlen(CONTENT_STATE_KEY, "items")

    before = time.time()
    stored, stored_version, size = run(redis_url, body)

    assert stored is not None
    assert stored.items == demo_items and stored.token == "token-1" and stored.version == version
    assert before - 1 <= stored.saved_at <= time.time() + 1
    assert stored_version == version
    assert compile_snapshot(stored.items).version == version  # rebuilds the same snapshot
    assert size < 4_000  # 11 kB of JSON, compressed


def test_save_replaces_everything(redis_url: str, demo_items: ContentItems) -> None:
    smaller = msgspec.structs.replace(demo_items, entries=demo_items.entries[:3])

    async def body(client: Redis, store: ContentStore) -> StoredContent | None:
        await store.save(demo_items, "token-1", "v1")
        await store.save(smaller, None, "v2")
        return await store.load()

    stored = run(redis_url, body)
    assert stored is not None
    assert stored.items == smaller and stored.token is None and stored.version == "v2"


def test_save_token_moves_only_the_token(redis_url: str, demo_items: ContentItems) -> None:
    async def body(client: Redis, store: ContentStore) -> tuple[bool, bool, StoredContent | None, bool]:
        nothing_yet = await store.save_token("early")
        created = await client.exists(CONTENT_STATE_KEY)
        await store.save(demo_items, "token-1", "v1")
        moved = await store.save_token("token-2")
        return nothing_yet, bool(created), await store.load(), moved

    nothing_yet, created, stored, moved = run(redis_url, body)
    assert not nothing_yet and not created  # a token without items is not stored
    assert moved and stored is not None
    assert stored.token == "token-2" and stored.version == "v1" and stored.items == demo_items


@pytest.mark.parametrize(
    "damage",
    [
        {"items": b"not zlib at all"},
        {"items": zlib.compress(b'{"entries": "not a list"}')},
        {"items": zlib.compress(b"[1, 2, 3")},
        {"format": b"msgpack/0"},
        {"saved_at": b"yesterday"},
    ],
    ids=["not-compressed", "wrong-shape", "broken-json", "old-format", "bad-timestamp"],
)
def test_damaged_state_is_ignored(
    redis_url: str, demo_items: ContentItems, damage: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    async def body(client: Redis, store: ContentStore) -> tuple[StoredContent | None, str | None]:
        await store.save(demo_items, "token-1", "v1")
        await client.hset(CONTENT_STATE_KEY, mapping=damage)  # type: ignore[arg-type]
        return await store.load(), await store.version()

    with caplog.at_level(logging.WARNING, logger="vary.content"):
        stored, version = run(redis_url, body)
    assert stored is None and version == "v1"
    assert any("ignoring the stored content" in r.getMessage() for r in caplog.records)


def test_incomplete_state_is_ignored(redis_url: str) -> None:
    async def body(client: Redis, store: ContentStore) -> StoredContent | None:
        await client.hset(CONTENT_STATE_KEY, mapping={"token": "t", "format": STORE_FORMAT})
        return await store.load()

    assert run(redis_url, body) is None


def test_needs_a_bytes_client(redis_url: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        ContentStore(client)
    asyncio.run(client.aclose())
