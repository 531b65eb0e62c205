"""The model registry, on the real Valkey server: a version is registered once and never replaced,
and only versions of the safe shape get in (#17, item 7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from personalization.errors import InvalidInput, ModelVersionExists
from personalization.models.files import ModelTooLarge, read_model_files
from personalization.models.registry import ModelRegistry, UnknownModelVersion
from personalization.models.segment_model import ModelCard
from tests.personalization.models.skops_files import MiB, zip_of


@pytest.fixture
def demo(model_dir: Path) -> tuple[str, bytes, bytes]:
    """The demo model's version, card and file."""
    version, card, data, _ = read_model_files(model_dir / "models", None)
    return version, card, data


def _with_metric(card: bytes, value: float) -> bytes:
    """The same card claiming another roc_auc: what a replacement upload would change."""
    decoded = msgspec.json.decode(card, type=ModelCard)
    metrics = {segment: {**m, "roc_auc": value} for segment, m in decoded.metrics.items()}
    return msgspec.json.encode(msgspec.structs.replace(decoded, metrics=metrics))


def test_a_registered_version_is_never_replaced(redis_url: str, demo: tuple[str, bytes, bytes]) -> None:
    version, card, data = demo

    async def run() -> None:
        redis = Redis.from_url(redis_url)
        registry = ModelRegistry(redis)
        try:
            first = await registry.register(data, card)
            await registry.activate(version)
            with pytest.raises(ModelVersionExists, match="registered already") as caught:
                await registry.register(data, _with_metric(card, 0.123))
            assert caught.value.version == version
            assert (await registry.get(version)).card == first.card  # the card is unchanged
            kept = await registry.register(data, _with_metric(card, 0.123), if_absent=True)
            assert kept.card == first.card  # seeding keeps what is registered
            assert (await registry.active_versions())["segments"] == version
        finally:
            await redis.aclose()

    asyncio.run(run())


def test_of_two_concurrent_uploads_of_one_version_exactly_one_wins(
    redis_url: str, demo: tuple[str, bytes, bytes]
) -> None:
    version, card, data = demo
    cards = [_with_metric(card, 0.5 + i / 100) for i in range(4)]

    async def run() -> tuple[list[object], ModelCard]:
        redis = Redis.from_url(redis_url)
        try:
            results = await asyncio.gather(
                *(ModelRegistry(redis).register(data, c) for c in cards), return_exceptions=True
            )
            return results, (await ModelRegistry(redis).get(version)).card  # type: ignore[return-value]
        finally:
            await redis.aclose()

    results, stored = asyncio.run(run())
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, ModelVersionExists) for r in results if r is not winners[0])
    assert stored == winners[0].card  # type: ignore[attr-defined]


def test_malformed_versions_and_oversized_files_are_refused_before_anything_is_stored(
    redis_url: str, demo: tuple[str, bytes, bytes], sync_redis: object
) -> None:
    version, card, data = demo
    traversal = msgspec.json.encode({**msgspec.json.decode(card), "version": "../../etc/passwd"})

    async def run() -> None:
        redis = Redis.from_url(redis_url)
        registry = ModelRegistry(redis)
        try:
            with pytest.raises(InvalidInput) as caught:
                await registry.register(data, traversal)
            assert [p.key for p in caught.value.problems] == ["card.version"]
            with pytest.raises(InvalidInput) as caught:
                await registry.activate("../../etc/passwd")
            assert [p.key for p in caught.value.problems] == ["version"]
            with pytest.raises(ModelTooLarge, match="'schema.json'"):
                await registry.register(zip_of([("schema.json", 64 * MiB)]), card)
            with pytest.raises(UnknownModelVersion):
                await registry.activate(version)
        finally:
            await redis.aclose()

    asyncio.run(run())
    assert sync_redis.keys("vary:models:*") == []  # type: ignore[attr-defined]
