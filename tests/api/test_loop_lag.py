"""The event-loop-lag gauge (api/loop_lag.py): a blocking call in the loop shows up, old samples age out,
and ``/ready`` shows it."""

from __future__ import annotations

import asyncio
import time

from litestar.testing import TestClient

from api.loop_lag import LoopLagMonitor


def test_a_blocking_call_in_the_loop_shows_up_in_the_gauge() -> None:
    async def scenario() -> tuple[float, float]:
        monitor = LoopLagMonitor(interval_s=0.01)
        monitor.start()
        await asyncio.sleep(0.1)
        calm = monitor.snapshot().max_ms
        time.sleep(0.3)  # the loop is blocked: the sampler wakes up ~300 ms late
        await asyncio.sleep(0.05)
        stalled = monitor.snapshot().max_ms
        await monitor.stop()
        return calm, stalled

    calm, stalled = asyncio.run(scenario())
    assert stalled >= 250.0
    assert calm < 250.0


def test_samples_older_than_the_window_age_out_and_p99_is_nearest_rank() -> None:
    monitor = LoopLagMonitor(window_s=60.0)
    monitor.record(0.5, now=0.0)  # a 500 ms stall, 100 s ago by the end
    for i in range(100):
        monitor.record(0.001 * (i + 1), now=40.0 + i * 0.6)
    lag = monitor.snapshot()
    assert lag.samples == 100  # the stall at t=0 is out of the window ending at t=99.4
    assert lag.max_ms == 100.0
    assert lag.p99_ms == 99.0  # ceil(0.99 * 100) = 99th smallest
    assert lag.last_ms == 100.0
    assert LoopLagMonitor().snapshot().samples == 0


def test_ready_shows_the_loop_lag_publicly(client: TestClient) -> None:
    lag = client.get("/ready").json()["loop_lag"]
    assert set(lag) == {"samples", "max_ms", "p99_ms", "last_ms"}
    assert lag["samples"] >= 0 and lag["max_ms"] >= lag["p99_ms"] >= 0.0
