"""Erasing a visitor reaches the sinks (#17.4): every sink is told, dead letters lose their entries.

Before, an erase never left Redis's own keys and streams: receivers were not told, and the copies in
``vary:sinks:dead:<sink>`` kept the visitor's exposures and events. Real Valkey, real HTTP receiver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis

from personalization.seams import SinkRecord
from personalization.sinks import SegmentSink, WebhookSink, dead_letter_stream
from personalization.sinks.erasures import VisitorErased, notify_sinks
from personalization.store.erase_copies import erase_everywhere
from personalization.store.keys import EXPOSURES, SINK_ERASURES
from personalization.types import EXPOSURE_ENCODER
from tests.personalization.sinks.test_sinks import (  # noqa: F401
    SECRET,
    Receiver,
    _drain,
    _exposure,
    _runner,
    receiver,
)

GONE, KEPT = "forget-me-sink", "keep-me-sink"


class ExposuresOnly:
    """A plugin sink that asked for exposures only: it is told of erasures all the same."""

    name = "exposures-only"
    kinds = ("exposure",)

    def __init__(self) -> None:
        self.batches: list[list[SinkRecord]] = []

    async def deliver(self, batch: Sequence[SinkRecord]) -> None:
        self.batches.append(list(batch))


def test_every_sink_gets_an_erase_record_and_the_notice_goes_once_all_delivered(
    redis_url: str, sync_redis, receiver: Receiver  # noqa: ANN001, F811
) -> None:
    plugin = ExposuresOnly()

    async def run() -> None:
        hook_client, hook = _runner(redis_url, WebhookSink(receiver.url, SECRET))
        plugin_client, other = _runner(redis_url, plugin)
        for runner in (hook, other):
            await runner.ensure_groups()
        async with Redis.from_url(redis_url) as redis:
            await notify_sinks(redis, GONE, now=1_780_000_000.0)
        await _drain(hook)
        assert sync_redis.xlen(SINK_ERASURES) == 1  # the other sink still owes it
        await _drain(other)
        for runner, client in ((hook, hook_client), (other, plugin_client)):
            await runner.aclose()
            await client.aclose()

    asyncio.run(run())
    (record,) = receiver.records()
    assert record["kind"] == "erase" and record["stream"] == SINK_ERASURES
    assert record["data"] == {"visitor_id": GONE, "ts": 1_780_000_000.0}
    ((delivered,),) = plugin.batches
    assert delivered.kind == "erase" and delivered.record == VisitorErased(visitor_id=GONE, ts=1_780_000_000.0)
    assert sync_redis.xlen(SINK_ERASURES) == 0  # delivered everywhere: the id in clear is gone


def test_the_segment_sink_cannot_delete_and_says_so_without_a_call(
    redis_url: str, sync_redis, receiver: Receiver, caplog: pytest.LogCaptureFixture  # noqa: ANN001, F811
) -> None:
    async def run() -> None:
        client, runner = _runner(redis_url, SegmentSink("write-key", receiver.url))
        await runner.ensure_groups()
        async with Redis.from_url(redis_url) as redis:
            await notify_sinks(redis, GONE)
        await _drain(runner)
        await runner.aclose()
        await client.aclose()

    with caplog.at_level(logging.WARNING, logger="vary.sinks"):
        asyncio.run(run())
    assert receiver.requests == []  # the Tracking API has no delete call: nothing is sent
    assert any("deletion regulation" in r.getMessage() and GONE not in r.getMessage() for r in caplog.records)
    assert sync_redis.xlen(SINK_ERASURES) == 0


def test_erase_removes_the_visitors_dead_letters_and_keeps_the_others(
    redis_url: str, sync_redis, receiver: Receiver, tmp_path: Path  # noqa: ANN001, F811
) -> None:
    receiver.default = 400  # every delivery refused: everything is dead-lettered

    async def run() -> None:
        client, runner = _runner(redis_url, WebhookSink(receiver.url, SECRET))
        await runner.ensure_groups()
        for i, visitor in enumerate((GONE, KEPT, GONE)):
            sync_redis.xadd(EXPOSURES, {"data": EXPOSURE_ENCODER.encode(_exposure(i, visitor))})
        await _drain(runner)
        async with Redis.from_url(redis_url) as redis:
            erased = await erase_everywhere(redis, GONE, data_dir=tmp_path)
        await runner.aclose()
        await client.aclose()
        return erased

    erased = asyncio.run(run())
    dead = dead_letter_stream("webhook")
    assert erased.dead_letters_deleted == 2
    left = [fields["data"] for _, fields in sync_redis.xrange(dead)]
    assert len(left) == 1 and KEPT in left[0] and not any(GONE in data for data in left)
    assert erased.sink_notices == 1 and sync_redis.xlen(SINK_ERASURES) == 1  # the webhook's group owes it
