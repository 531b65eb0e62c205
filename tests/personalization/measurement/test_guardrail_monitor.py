"""The guardrail loop on a real Valkey: a harmed variant is paused once, one sink notice however many
monitors see it, a resumed pause stays lifted in its phase, and each phase reads its own aggregates."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
from redis.asyncio import Redis

from personalization.measurement.guardrail_monitor import GuardrailMonitor, live_pauses
from personalization.seams import SinkRecord
from personalization.sinks import SinkRunner
from personalization.sinks.guardrail_events import GuardrailPaused
from personalization.store.keys import SINK_GUARDRAILS, agg_key, phases_key
from personalization.store.pauses import load_pause_records, resume
from personalization.types import Experience, Guardrail

NOW = 1_780_000_000.0
HERO = Experience(id="h", key="hero", name="Hero", type="ab_test", variants=("hero-1", "hero-2"),
                  weights=(1 / 3, 1 / 3, 1 / 3),
                  guardrails=(Guardrail(metric="csat", harm="decrease"),
                              Guardrail(metric="task_success", harm="decrease")))


def _harm(name: str = "hero") -> dict[str, int]:
    """Variant 2 harms CSAT (45 % vs 80 % satisfied) and task success; variant 1 is like control."""
    return {"0:csat:5": 320, "0:csat:2": 80, "1:csat:5": 318, "1:csat:2": 82,
            "2:csat:5": 180, "2:csat:2": 220}


class Collect:
    name = "collect"
    kinds = ("exposure",)

    def __init__(self) -> None:
        self.records: list[SinkRecord] = []

    async def deliver(self, batch: Sequence[SinkRecord]) -> None:
        self.records += batch


def test_a_harmed_variant_is_paused_once_and_every_sink_hears_of_it_once(redis_url: str) -> None:
    async def run() -> None:
        async with Redis.from_url(redis_url) as redis:
            sink = Collect()
            runner = SinkRunner(redis, sink, consumer="c1")
            await runner.ensure_groups()
            await redis.hset(agg_key("hero", "all"), mapping=_harm())
            await redis.hset(agg_key("hero", "ux:search"), mapping={"0:tasks": 300, "0:task_ok": 270,
                                                                    "2:tasks": 300, "2:task_ok": 200})
            one = GuardrailMonitor(redis, lambda: [HERO], clock=lambda: NOW)
            other = GuardrailMonitor(redis, lambda: [HERO], clock=lambda: NOW + 1)
            made = await one.check_once()
            assert [(p.variant, p.metric) for p in made] == [(2, "csat")]
            assert made[0].reason.startswith("paused: guardrail csat harmed (csat −35.0 pts [") and made[0].reason.endswith("400 vs 400 answers)")
            assert await other.check_once() == [] and await one.check_once() == []
            records = (await load_pause_records(redis))["hero"]
            assert list(records) == [2] and records[2].metric == "csat" and records[2].at == NOW
            assert await redis.xlen(SINK_GUARDRAILS) == 1
            await runner.run_once()
            (record,) = sink.records
            assert record.kind == "guardrail_paused" and isinstance(record.record, GuardrailPaused)
            assert msgspec.to_builtins(record.record) == {
                "type": "guardrail_paused", "experience": "hero", "variant": 2, "metric": "csat",
                "reason": made[0].reason, "phase": 1, "ts": NOW}

    asyncio.run(run())


def test_a_resumed_pause_is_not_reapplied_in_its_phase_but_a_new_phase_is_tested_afresh(redis_url: str) -> None:
    async def run() -> None:
        async with Redis.from_url(redis_url) as redis:
            await redis.hset(agg_key("hero", "all"), mapping=_harm())
            monitor = GuardrailMonitor(redis, lambda: [HERO], clock=lambda: NOW)
            assert len(await monitor.check_once()) == 1
            assert await resume(redis, "hero", 1, now=NOW + 5) == [2]
            assert await monitor.check_once() == [] and await load_pause_records(redis) == {}
            # Phase 2 has its own aggregates: nothing there yet, so nothing to pause …
            await redis.hset(phases_key("hero"), "current", 2)  # a set-up edit started phase 2
            monitor2 = GuardrailMonitor(redis, lambda: [HERO], clock=lambda: NOW + 60)
            assert await monitor2.check_once() == []
            # … until the harm shows in phase 2's data.
            await redis.hset(agg_key("hero@p2", "all"), mapping=_harm())
            made = await monitor2.check_once()
            assert [(p.variant, p.phase) for p in made] == [(2, 2)]
            assert (await load_pause_records(redis))["hero"][2].phase == 2
            assert await live_pauses(redis, ["hero", "other"]) == {"hero": {2: made[0].reason}}
            await redis.hset(phases_key("hero"), "current", 3)  # phase 2's pause does not outlive it
            assert await live_pauses(redis, ["hero"]) == {}
            assert await redis.xlen(SINK_GUARDRAILS) == 2

    asyncio.run(run())


def test_only_running_experiences_with_guardrails_are_checked(redis_url: str) -> None:
    async def run() -> None:
        async with Redis.from_url(redis_url) as redis:
            ended = msgspec.structs.replace(HERO, ends_at=NOW - 1)
            bare = msgspec.structs.replace(HERO, key="bare", guardrails=())
            for key in ("hero", "bare"):
                await redis.hset(agg_key(key, "all"), mapping=_harm())
            monitor = GuardrailMonitor(redis, lambda: [ended, bare], clock=lambda: NOW)
            assert await monitor.check_once() == []
            assert await load_pause_records(redis) == {}

    asyncio.run(run())


def test_the_loop_checks_until_stopped(redis_url: str) -> None:
    async def run() -> None:
        async with Redis.from_url(redis_url) as redis:
            await redis.hset(agg_key("hero", "all"), mapping=_harm())
            monitor = GuardrailMonitor(redis, lambda: [HERO], every_s=0.01, clock=lambda: NOW)
            stop = asyncio.Event()
            task = asyncio.create_task(monitor.run_forever(stop))
            for _ in range(200):
                if monitor.paused:
                    break
                await asyncio.sleep(0.01)
            stop.set()
            await task
            assert [(p.experience, p.variant) for p in monitor.paused] == [("hero", 2)]

    asyncio.run(run())
